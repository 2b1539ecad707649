"""Kvasir-SEG → CVC-ClinicDB: AlignFlow against the honest alternatives, following `splits.json` exactly.

Source = Kvasir-SEG `source.train` (segmenters, generators) and `source.val` (sanity check of the source segmenter);
references = `target.references[K{k}_seed{s}]`, images only (their masks are never read); scores only on
`target.test`. Nothing is tuned on `target.test`: generator early stopping uses references held out from the reward.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import pipeline
from ..baselines.augment import classic_augment
from ..baselines.fda import fourier_domain_adaptation
from ..baselines.histogram import match_histograms
from ..checkpoint import write_json_atomic
from ..config import RunConfig, replace, to_dict
from ..data.folders import PairSet, load_pairs, load_references, write_images, write_pairs
from ..errors import InputDataError, choose
from ..evaluation import compare_generators
from ..events import EventCallback, StageProgress, ignore_events
from ..presets import DEFAULT, DEMO
from ..reward.features import load_feature_extractor
from ..segmenter.train import evaluate_segmenter, train_segmenter
from ..version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchPreset:
    run: RunConfig
    reference_sets: tuple[str, ...]       # keys of splits.json target.references
    num_synthetic: int                    # synthetic (or baseline-transformed) pairs per method
    max_source_pairs: int | None = None   # cap on source.train (smoke only)
    max_test_images: int | None = None    # cap on target.test (smoke only; the real presets use all 407)
    description: str = ""


def _scaled(run: RunConfig, size: int) -> RunConfig:
    return replace(run, data=replace(run.data, image_size_px=size))


BENCH_PRESETS = {
    "smoke": BenchPreset(
        replace(DEMO, image_generator=replace(DEMO.image_generator, num_steps=40, checkpoint_every_steps=20),
                mask_generator=replace(DEMO.mask_generator, num_steps=20, checkpoint_every_steps=20,
                                       max_train_iou=1.01),
                align=replace(DEMO.align, num_steps=4, eval_every_steps=2, eval_num_images=8, batch_size=4,
                              feature_size_px=32),
                segmenter=replace(DEMO.segmenter, num_steps=20)),
        ("K5_seed0", "K10_seed0"), num_synthetic=16, max_source_pairs=48, max_test_images=32,
        description="harness check only: tiny models, numbers mean nothing"),
    "cpu": BenchPreset(
        _scaled(replace(DEMO, image_generator=replace(DEMO.image_generator, num_steps=1200, batch_size=16,
                                                      checkpoint_every_steps=200),
                        mask_generator=replace(DEMO.mask_generator, num_steps=600, checkpoint_every_steps=200),
                        align=replace(DEMO.align, num_steps=80, feature_size_px=96),
                        segmenter=replace(DEMO.segmenter, num_steps=400)), 64),
        ("K10_seed0",), num_synthetic=300, description="64 px, K=10 seed 0: what fits ~40 min of a 2-core CPU"),
    "gpu": BenchPreset(DEFAULT, ("K10_seed0",), num_synthetic=900,
                       description="128 px, the whole table for K=10 seed 0 (one H100, < 10 min target)"),
    "gpu-full": BenchPreset(DEFAULT,
                            tuple(f"K{k}_seed{s}" for k in (1, 5, 10) for s in (0, 1, 2)), num_synthetic=900,
                            description="K ∈ {1, 5, 10} × 3 seeds at 128 px"),
}

METHODS = ("source_only", "classic_augmentation", "histogram_matching", "fda", "stage1_synthetic", "alignflow",
           "alignflow_real_masks")


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.monotonic()
        try:
            return work()
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - start, 1)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_splits(data_root: Path) -> dict[str, Any]:
    path = Path(data_root) / "splits.json"
    if not path.is_file():
        raise InputDataError("splits.json not found (expected the layout of ../shared/data/polyp)", path)
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise InputDataError(f"does not parse as JSON ({error})", path) from error


def _segmenter_score(name: str, source: PairSet, config: RunConfig, device: torch.device, test: PairSet,
                     on_event: EventCallback, extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    model = train_segmenter(source.images, source.masks, config.segmenter, device, on_event,
                            synthetic_images=None if extra is None else extra[0],
                            synthetic_masks=None if extra is None else extra[1], stage=f"segmenter:{name}")
    result = evaluate_segmenter(model, test.images, test.masks, device)
    return {"mdice": result["mdice"], "miou": result["miou"]}


def _aggregate(per_set: dict[str, dict]) -> dict[str, Any]:
    """Per-K means and spreads over reference seeds: {"K10": {"mdice_mean", "mdice_std", ...}}."""
    by_k: dict[str, list[dict]] = {}
    for set_name, scores in per_set.items():
        by_k.setdefault(set_name.split("_")[0], []).append(scores)
    out = {}
    for k, runs in by_k.items():
        dice, iou = [r["mdice"] for r in runs], [r["miou"] for r in runs]
        out[k] = {"mdice_mean": statistics.fmean(dice), "mdice_std": statistics.pstdev(dice),
                  "miou_mean": statistics.fmean(iou), "miou_std": statistics.pstdev(iou), "num_seeds": len(runs)}
    return out


def run_polyp_benchmark(data_root: Path, out_dir: Path, preset_name: str, device: torch.device,
                        on_event: EventCallback = ignore_events) -> dict[str, Any]:
    """Run every method of DESIGN.md §2 on the fixed splits; writes results.json and report.html in `out_dir`."""
    bench = choose("benchmark preset", preset_name, BENCH_PRESETS)
    config, data_root, out_dir = bench.run, Path(data_root), Path(out_dir)
    splits, timer, started = read_splits(data_root), Timer(), time.monotonic()
    progress = StageProgress(on_event, "bench", 1)
    source_dir = data_root / splits["source"]["dataset"]
    target_dir = data_root / splits["target"]["dataset"]

    # Data, exactly by the split protocol.
    train_ids = splits["source"]["train"][: bench.max_source_pairs]
    test_ids = splits["target"]["test"][: bench.max_test_images]
    source = timer("load_data", lambda: load_pairs(source_dir, config.data, train_ids))
    source_val = timer("load_data", lambda: load_pairs(source_dir, config.data, splits["source"]["val"][:200]))
    test = timer("load_data", lambda: load_pairs(target_dir, config.data, test_ids))
    progress.log(f"{len(source)} source pairs, {len(test)} target test images at {config.data.image_size_px} px")

    # Stage 1 (shared by every reference set) and the source-only segmenter (also the mask-consistency judge).
    run, config, _ = pipeline.start_run(out_dir / "run", config, {"source": str(source_dir)}, resume=False)
    pairs_dir = out_dir / "source_pairs"
    write_pairs(pairs_dir, source.images, source.masks, source.names)
    run.update_inputs(source=str(pairs_dir))
    timer("stage1", lambda: pipeline.train_generators(run, device, on_event=on_event))
    judge = timer("source_segmenter", lambda: pipeline.ensure_source_segmenter(run, source, config, device, False,
                                                                               on_event))
    from ..segmenter.metrics import dice_iou, summarize

    def judge_score(data: PairSet) -> dict:
        result = summarize(*dice_iou(judge.predict_probs(data.images) > 0.5, data.masks > 0.5))
        return {"mdice": result["mdice"], "miou": result["miou"]}

    source_only = {"target": judge_score(test), "source_val": judge_score(source_val)}
    generator_rng = torch.Generator().manual_seed(0)
    count = bench.num_synthetic
    copy_index = torch.arange(count) % len(source)

    # Baselines that ignore the references.
    per_set: dict[str, dict[str, dict]] = {m: {} for m in METHODS}
    augmented = classic_augment(source.images[copy_index], source.masks[copy_index], generator_rng)
    classic = timer("baselines", lambda: _segmenter_score("classic", source, config, device, test, on_event,
                                                          augmented))
    stage1_dir = pipeline.synthesize(run, device, replace(config.synthesis, num_pairs=count), out_dir / "stage1_pairs",
                                     "stage1", on_event)
    stage1_pairs = load_pairs(stage1_dir, config.data)
    stage1_score = timer("segmenters", lambda: _segmenter_score("stage1", source, config, device, test, on_event,
                                                                (stage1_pairs.images, stage1_pairs.masks)))
    generator_metrics: dict[str, Any] = {}
    extractor = load_feature_extractor(config.align.feature_size_px, config.align.style_weight, device)

    for set_name in bench.reference_sets:
        progress.log(f"reference set {set_name}")
        ref_ids = splits["target"]["references"][set_name]
        references = load_references(target_dir / "images", config.data, ref_ids)  # images only, never masks
        per_set["source_only"][set_name] = source_only["target"]
        per_set["classic_augmentation"][set_name] = classic
        per_set["stage1_synthetic"][set_name] = stage1_score

        # Non-generative adaptation to the references.
        matched = timer("baselines", lambda: match_histograms(source.images[copy_index], references.images))
        per_set["histogram_matching"][set_name] = timer("segmenters", lambda: _segmenter_score(
            "histogram", source, config, device, test, on_event, (matched, source.masks[copy_index])))
        fda = timer("baselines", lambda: fourier_domain_adaptation(source.images[copy_index], references.images))
        per_set["fda"][set_name] = timer("segmenters", lambda: _segmenter_score(
            "fda", source, config, device, test, on_event, (fda, source.masks[copy_index])))

        # AlignFlow: align to these references, synthesise, train.
        ref_dir = out_dir / "references" / set_name
        write_images(ref_dir / "images", references.images, references.names)
        for stale in (run.align_state, run.aligned_generator):
            stale.unlink(missing_ok=True)
        timer("align", lambda: pipeline.align(run, ref_dir, device, on_event=on_event))
        aligned_dir = timer("synthesis", lambda: pipeline.synthesize(
            run, device, replace(config.synthesis, num_pairs=count), out_dir / f"aligned_{set_name}", "aligned",
            on_event))
        aligned = load_pairs(aligned_dir, config.data)
        per_set["alignflow"][set_name] = timer("segmenters", lambda: _segmenter_score(
            "alignflow", source, config, device, test, on_event, (aligned.images, aligned.masks)))
        real_mask_dir = timer("synthesis", lambda: pipeline.synthesize(
            run, device, replace(config.synthesis, num_pairs=count, mask_source="source"),
            out_dir / f"aligned_real_masks_{set_name}", "aligned", on_event))
        real_mask = load_pairs(real_mask_dir, config.data)
        per_set["alignflow_real_masks"][set_name] = timer("segmenters", lambda: _segmenter_score(
            "alignflow_real_masks", source, config, device, test, on_event, (real_mask.images, real_mask.masks)))

        # Generator metrics against target test images (never seen by the reward).
        generators = {"stage1": pipeline.load_image_generator(run.image_generator, device),
                      "aligned": pipeline.load_image_generator(run.aligned_generator, device)}
        masks = source.masks[torch.arange(min(256, count)) % len(source)]
        comparison = timer("generator_metrics", lambda: compare_generators(
            generators, masks, test.images, extractor, judge, config.synthesis.sampler, device))
        generator_metrics[set_name] = comparison.metrics

    results = {
        "benchmark": "polyp: kvasir_seg -> cvc_clinicdb", "preset": preset_name, "description": bench.description,
        "commit": _git_commit(), "library_version": __version__, "device": _device_name(device),
        "config": to_dict(config), "reference_sets": list(bench.reference_sets),
        "num_source_pairs": len(source), "num_test_images": len(test), "num_synthetic": count,
        "source_val": source_only["source_val"],
        "methods": {m: {"per_set": per_set[m], "by_k": _aggregate(per_set[m])} for m in METHODS},
        "generator": generator_metrics, "wall_time_s": {**timer.seconds,
                                                         "total": round(time.monotonic() - started, 1)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", results)
    from .report import write_bench_report

    write_bench_report(out_dir / "report.html", results, source, test)
    return results


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
