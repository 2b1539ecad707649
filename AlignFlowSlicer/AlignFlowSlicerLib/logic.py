"""AlignFlowLogic: scene nodes → input folders → `alignflow` in a separate process → results back in the scene.

Qt-free and dialog-free (the widget decides what to show), so pytest drives it against a slicer-core scene; the
module's `AlignFlowSlicerLogic` holds one and adds the parameter node. The scene and the runner factory are passed
in. AlignFlowLib is imported inside methods: importing it pulls in torch, which is
only there after the widget's dependency check.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .install import Need, unmet

# The oldest Slicer this extension supports; it ships Python 3.9, so the module and the library it bundles must parse
# and import there (checked in CI: Testing/slicer/test_slicer_static.py).
MINIMUM_SLICER_VERSION = "5.6"
MINIMUM_PYTHON = (3, 9)
DOCUMENTATION_URL = "https://github.com/alignflow/AlignFlow#use-in-3d-slicer"


def missing_requirements() -> List[Need]:
    """Python packages that are missing or too old (no heavy import)."""
    return unmet()


def _flag(args: list[str], name: str, value: Any) -> None:
    if value is not None and value != "":
        args += [name, str(value)]


class AlignFlowLogic:
    """One object per scene. Long actions return a started `ProcessRunner`; the caller polls it.

    The Slicer module holds one of these as a member (its ScriptedLoadableModuleLogic must stay constructible with no
    arguments, as Slicer constructs it); pytest builds it on a slicer-core scene.
    """

    def __init__(self, scene, runner_factory: Callable[..., Any] | None = None, device: str = "auto"):
        self.scene = scene
        self.device = device
        self._runner_factory = runner_factory

    # Inputs: scene nodes → folders the CLI reads.

    def source_pairs_for(self, volumes: Sequence[Any], segmentations: Optional[Sequence[Any]] = None
                         ) -> List[tuple]:
        """Pair each volume with its segmentation: `segmentations[i]` when the user chose one, else the one linked to
        it, else the one on its voxel grid (same study first); see AlignFlowLib.mrml.matching.

        Raises:
            ValueError: a volume without a segmentation or with several equally good ones, naming them.
        """
        from AlignFlowLib.mrml.matching import pair_volumes

        return pair_volumes(self.scene, volumes, segmentations)

    def export_source(self, volumes: Sequence[Any], folder: Path, segment_names: Sequence[str] = (),
                      segmentations: Optional[Sequence[Any]] = None) -> Path:
        """Write the selected volumes and their segmentations as a pair folder that holds exactly this selection
        (segments merged, or only the named ones, looked up in each pair's own segmentation)."""
        from AlignFlowLib import mrml
        from AlignFlowLib.mrml.matching import segment_ids_by_name

        pairs = self.source_pairs_for(volumes, segmentations)
        names = [n for n in segment_names if n.strip()]
        ids = segment_ids_by_name(pairs, names) if names else None
        return mrml.export_pairs(self.scene, pairs, folder, per_pair_segment_ids=ids)

    def export_references(self, volumes: Sequence[Any], folder: Path) -> Path:
        """Write the reference volumes into a folder that holds exactly these (1–10) references."""
        from AlignFlowLib import mrml

        if len(volumes) > 10:
            raise ValueError(f"{len(volumes)} reference volumes selected; AlignFlow aligns to 1–10 target images")
        return mrml.export_references(self.scene, volumes, folder)

    # Commands: one place where module settings become CLI flags.

    def train_args(self, source: Path, run: Path, image_size_px: int | None = None, steps: int | None = None,
                   mask_steps: int | None = None, preset: str = "default", resume: bool = False) -> list[str]:
        args = ["train", "--source", str(source), "--out", str(run), "--preset", preset, "--device", self.device]
        _flag(args, "--image-size", image_size_px)
        _flag(args, "--steps", steps)
        _flag(args, "--mask-steps", mask_steps)
        return args + (["--resume"] if resume else [])

    def align_args(self, run: Path, references: Path, steps: int | None = None, adapter: str | None = None,
                   resume: bool = False) -> list[str]:
        args = ["align", "--run", str(run), "--references", str(references), "--device", self.device]
        _flag(args, "--align-steps", steps)
        _flag(args, "--adapter", adapter)
        return args + (["--resume"] if resume else [])

    def synthesize_args(self, run: Path, num_pairs: int | None = None, seed: int | None = None,
                        mask_source: str | None = None, out: Path | None = None) -> list[str]:
        args = ["synthesize", "--run", str(run), "--device", self.device]
        _flag(args, "--num", num_pairs)
        _flag(args, "--seed", seed)
        _flag(args, "--mask-source", mask_source)
        _flag(args, "--out", out)
        return args

    def segmenter_train_args(self, source: Path, out: Path, synthetic: Path | None = None, arch: str | None = None,
                             steps: int | None = None) -> list[str]:
        args = ["segmenter", "train", "--source", str(source), "--out", str(out), "--device", self.device]
        _flag(args, "--synthetic", synthetic)
        _flag(args, "--arch", arch)
        _flag(args, "--steps", steps)
        return args

    def segmenter_evaluate_args(self, model: Path, data: Path, out: Path | None = None) -> list[str]:
        args = ["segmenter", "evaluate", "--model", str(model), "--data", str(data), "--device", self.device]
        _flag(args, "--out", out)
        return args

    def segmenter_export_args(self, run: Path, out: Path) -> list[str]:
        return ["segmenter", "export", "--run", str(run), "--out", str(out), "--device", self.device]

    def segmenter_predict_args(self, model: Path, volume_file: Path, out: Path) -> list[str]:
        from AlignFlowLib.mrml.segmenter import predict_args

        return predict_args(model, volume_file, out, self.device)

    def run_all_args(self, source: Path, references: Path, run: Path, test: Path | None = None,
                     preset: str = "default", image_size_px: int | None = None, steps: int | None = None,
                     mask_steps: int | None = None, align_steps: int | None = None,
                     segmenter_steps: int | None = None, num_pairs: int | None = None,
                     resume: bool = False) -> list[str]:
        args = ["run", "--source", str(source), "--references", str(references), "--out", str(run),
                "--preset", preset, "--device", self.device]
        for name, value in (("--test", test), ("--image-size", image_size_px), ("--steps", steps),
                            ("--mask-steps", mask_steps), ("--align-steps", align_steps),
                            ("--segmenter-steps", segmenter_steps), ("--num", num_pairs)):
            _flag(args, name, value)
        return args + (["--resume"] if resume else [])

    def start(self, args: Sequence[str]):
        """Launch `alignflow <args> --progress jsonl` in its own process group; returns the runner to poll."""
        if self._runner_factory is not None:
            return self._runner_factory(list(args))
        from AlignFlowLib.runner import ProcessRunner

        return ProcessRunner(list(args)).start()

    # Results: run folder → scene.

    @staticmethod
    def synthetic_folder(run: Path) -> Path:
        return Path(run) / "synthetic"

    @staticmethod
    def exported_segmenter(run_or_segmenter: Path) -> Path:
        """RUN/segmenter/exported, SEG/exported, or the folder itself when it holds model.json."""
        folder = Path(run_or_segmenter)
        for candidate in (folder, folder / "exported", folder / "segmenter" / "exported"):
            if (candidate / "model.json").is_file():
                return candidate
        return folder / "segmenter" / "exported"

    @staticmethod
    def run_summary(run: Path) -> str:
        """One line on what a run folder holds (shown when a run is loaded)."""
        run = Path(run)
        if not (run / "config.json").is_file():
            return f"{run}: not a run folder yet (no config.json)"
        parts = [name for name, path in (("generators", run / "checkpoints"), ("synthetic pairs", run / "synthetic"),
                                         ("segmenter", run / "segmenter" / "exported" / "model.json"),
                                         ("report", run / "report.html")) if path.exists()]
        metrics = run / "metrics.json"
        if metrics.is_file():
            values = json.loads(metrics.read_text(encoding="utf-8"))
            flat = {k: v for section in values.values() if isinstance(section, dict)
                    for k, v in section.items() if isinstance(v, (int, float))}
            parts += [f"{k}={v:.3g}" for k, v in list(flat.items())[:4]]
        return f"{run.name}: " + (", ".join(parts) if parts else "configured, nothing trained yet")

    def load_synthetic(self, folder: Path, max_pairs: int | None = None, name: str | None = None):
        """Generated pairs → a subject-hierarchy folder of volume + outlined segmentation nodes."""
        from AlignFlowLib import mrml

        return mrml.load_pair_folder(self.scene, folder, name or f"AlignFlow {Path(folder).parent.name} synthetic",
                                     max_pairs)

    # Segmenting a volume: in the job process, like training, so the GUI stays live and Cancel works.

    def prepare_prediction(self, model_folder: Path, volume) -> tuple[list[str], Path]:
        """Write `volume` to a private temporary folder; returns (CLI arguments, that folder). The folder is removed
        by `import_prediction` or `discard_prediction`."""
        from AlignFlowLib import mrml

        if volume is None:
            raise ValueError("choose the volume to segment")
        model = self.exported_segmenter(model_folder)
        if not (model / "model.json").is_file():
            raise ValueError(f"{model}: no exported segmenter here (model.json); train or export one first")
        work = Path(tempfile.mkdtemp(prefix="alignflow-predict-"))
        try:
            volume_file = mrml.write_volume(volume, work / "volume.nrrd")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return self.segmenter_predict_args(model, volume_file, work / "prediction.nrrd"), work

    @staticmethod
    def discard_prediction(work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)

    def import_prediction(self, work: Path, volume, segmentation, segment_name: str = "AlignFlow lesion"
                          ) -> tuple[str, int]:
        """Put the job's prediction into a NEW segment of `segmentation` (uniquely named, with colour and
        terminology; no existing segment is touched). Returns (segment id, voxels filled); `undo_prediction`
        removes it again.

        Raises:
            ValueError: the volume or segmentation left the scene while the job ran, or the prediction's voxel grid
                is not the volume's.
        """
        import slicer
        from AlignFlowLib import mrml
        from AlignFlowLib.mrml.segmenter import mask_from_label_file, segmentation_labelmap

        try:
            for node, what in ((volume, "volume"), (segmentation, "segmentation")):
                if node is None or node.GetScene() is not self.scene:
                    raise ValueError(f"the {what} was removed from the scene while the segmenter ran")
            mask = mask_from_label_file(work / "prediction.nrrd", volume)
            # Through both nodes' parent transforms, so the segment lands on the volume's voxels.
            oriented = segmentation_labelmap(self.scene, mask, volume, segmentation)
            self.scene.SaveStateForUndo()
            segment_id = mrml.add_new_segment(segmentation, segment_name)
            modules = slicer.vtkSlicerSegmentationsModuleLogic
            if not modules.SetBinaryLabelmapToSegment(oriented, segmentation, segment_id, modules.MODE_REPLACE):
                raise ValueError(f"cannot write the prediction into {segmentation.GetName()!r}")
            return segment_id, int(mask.sum())
        finally:
            self.discard_prediction(work)

    @staticmethod
    def undo_prediction(segmentation, segment_id: str) -> bool:
        """Remove a segment that `import_prediction` added (the whole change it made); False if already gone."""
        content = segmentation.GetSegmentation()
        if content.GetSegment(segment_id) is None:
            return False
        content.RemoveSegment(segment_id)
        return True

    # What the panel's status line says about the compute this machine offers.

    @staticmethod
    def runtime_status(preset: str, device: str) -> tuple[str, bool]:
        """(one line: torch and CUDA versions and the device a job will use, whether to warn). Warns when a job
        would run the full-size preset on a CPU (hours instead of minutes)."""
        import torch

        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
        chosen = device if device != "auto" else ("cuda" if cuda else "mps" if mps else "cpu")
        where = torch.cuda.get_device_name(0) if chosen.startswith("cuda") and cuda else chosen.upper()
        cuda_text = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA build"
        line = f"torch {torch.__version__} ({cuda_text}); jobs run on {where}"
        warn = chosen == "cpu" and preset != "demo"
        if chosen.startswith("cuda") and not cuda:
            line, warn = line + ": but no CUDA GPU is available here", True
        elif warn:
            line += f": the '{preset}' preset takes hours on a CPU; use 'demo' here or a GPU machine"
        return line, warn

