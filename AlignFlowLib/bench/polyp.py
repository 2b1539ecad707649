"""Kvasir-SEG → CVC-ClinicDB: AlignFlow against the honest alternatives, following `splits.json` exactly.

Source = Kvasir-SEG `source.train` (segmenters, generators) and `source.val` (sanity check of the source segmenter);
references = `target.references[K{k}_seed{s}]`, images only (their masks are never read); scores only on
`target.test`. Nothing is tuned on `target.test`: generator early stopping uses references held out from the reward.

Every segmenter is trained with several seeds, because one seed's noise is as large as the effects measured here.
Ablations (`overrides`, a subset of `methods`, stage 1 reused from an earlier run) write the same results file.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
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
from ..checkpoint import load_checkpoint, write_json_atomic
from ..config import RunConfig, SegmenterConfig, apply_overrides, replace, to_dict
from ..data.folders import PairSet, load_pairs, load_references, write_images, write_pairs
from ..errors import InputDataError, RunFolderError, UsageError, choose
from ..evaluation import compare_generators
from ..events import EventCallback, StageProgress, ignore_events
from ..presets import DEFAULT, DEMO
from ..reward.features import load_feature_extractor
from ..run_folder import RunFolder
from ..segmenter.metrics import dice_iou, summarize
from ..segmenter.train import evaluate_segmenter, train_segmenter
from ..version import __version__
from .methods import METHODS, NON_GENERATIVE, meets_target
from .report import write_bench_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchPreset:
    run: RunConfig
    reference_sets: tuple[str, ...]       # keys of splits.json target.references
    num_synthetic: int                    # synthetic (or baseline-transformed) pairs per method
    segmenter_seeds: int = 1              # segmenters trained per method and reference set (seeds seed, seed+1, …)
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
        ("K5_seed0", "K10_seed0"), num_synthetic=16, segmenter_seeds=2, max_source_pairs=48, max_test_images=32,
        description="harness check only: tiny models, numbers mean nothing"),
    "cpu": BenchPreset(
        _scaled(replace(DEMO, image_generator=replace(DEMO.image_generator, num_steps=2000, batch_size=16,
                                                      checkpoint_every_steps=200),
                        mask_generator=replace(DEMO.mask_generator, num_steps=600, checkpoint_every_steps=200),
                        align=replace(DEMO.align, num_steps=80, feature_size_px=96),
                        segmenter=replace(DEMO.segmenter, num_steps=1000)), 64),
        ("K5_seed0", "K10_seed0"), num_synthetic=300, segmenter_seeds=3,
        description="64 px, K=5 and K=10 seed 0, 3 segmenter seeds: what fits about an hour of a 2-core CPU"),
    "gpu": BenchPreset(DEFAULT, ("K10_seed0",), num_synthetic=900, segmenter_seeds=1,
                       description="128 px, the whole table for K=10 seed 0 (one H100, < 10 min target)"),
    "gpu-full": BenchPreset(DEFAULT,
                            tuple(f"K{k}_seed{s}" for k in (1, 5, 10) for s in (0, 1, 2)), num_synthetic=900,
                            segmenter_seeds=1, description="K ∈ {1, 5, 10} × 3 seeds at 128 px"),
}

# DESIGN.md §5 and the benchmark issue: AlignFlow over source-only and the best non-generative baseline (mDice and
# mIoU points), the KID-EL0 ratio aligned / stage-1, and |K5 − K10| in mDice points.
TARGETS = {"mdice_gain_over_source_only": 4.0, "miou_gain_over_source_only": 5.6,
           "mdice_gain_over_best_non_generative": 1.5, "kid_ratio_aligned_to_stage1": 0.5, "k5_minus_k10_abs": 1.0}


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


def _segmenter_scores(name: str, source: PairSet, config: SegmenterConfig, num_seeds: int, device: torch.device,
                      test: PairSet, on_event: EventCallback,
                      extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train `num_seeds` segmenters (seeds config.seed, config.seed + 1, …) and score each on `test`."""
    runs = []
    for offset in range(num_seeds):
        seeded = replace(config, seed=config.seed + offset)
        model = train_segmenter(source.images, source.masks, seeded, device, on_event,
                                synthetic_images=None if extra is None else extra[0],
                                synthetic_masks=None if extra is None else extra[1], stage=f"segmenter:{name}")
        result = evaluate_segmenter(model, test.images, test.masks, device)
        runs.append({"seed": seeded.seed, "mdice": result["mdice"], "miou": result["miou"]})
    return {"mdice": statistics.fmean(r["mdice"] for r in runs), "miou": statistics.fmean(r["miou"] for r in runs),
            "runs": runs}


def aggregate(per_set: dict[str, dict]) -> dict[str, Any]:
    """Per K: the mean over reference seeds, and the spread (population std) over every trained segmenter of
    that K — segmenter seeds × reference seeds — so a single reference seed still shows its noise."""
    by_k: dict[str, list[dict]] = {}
    for set_name, scores in per_set.items():
        by_k.setdefault(set_name.split("_")[0], []).append(scores)
    out = {}
    for k, sets in by_k.items():
        runs = [run for scores in sets for run in scores.get("runs", [scores])]
        out[k] = {"mdice_mean": statistics.fmean(s["mdice"] for s in sets),
                  "mdice_std": statistics.pstdev([r["mdice"] for r in runs]),
                  "miou_mean": statistics.fmean(s["miou"] for s in sets),
                  "miou_std": statistics.pstdev([r["miou"] for r in runs]),
                  "num_seeds": len(sets), "num_runs": len(runs)}
    return out


def target_checks(methods: dict[str, Any], generator: dict[str, Any]) -> dict[str, Any]:
    """The benchmark targets, per K, from the aggregated scores (points = percentage points)."""
    checks: dict[str, Any] = {}
    alignflow = methods.get("alignflow", {}).get("by_k", {})
    for k, scores in alignflow.items():
        entry: dict[str, Any] = {}
        source_only = methods.get("source_only", {}).get("by_k", {}).get(k)
        if source_only:
            entry["mdice_gain_over_source_only"] = 100 * (scores["mdice_mean"] - source_only["mdice_mean"])
            entry["miou_gain_over_source_only"] = 100 * (scores["miou_mean"] - source_only["miou_mean"])
        baselines = {m: methods[m]["by_k"][k]["mdice_mean"] for m in NON_GENERATIVE
                     if k in methods.get(m, {}).get("by_k", {})}
        if baselines:
            best = max(baselines, key=baselines.get)
            entry["best_non_generative"] = best
            entry["mdice_gain_over_best_non_generative"] = 100 * (scores["mdice_mean"] - baselines[best])
        ratios = [g["aligned"]["kid_el0"] / g["stage1"]["kid_el0"] for name, g in generator.items()
                  if name.split("_")[0] == k and g["stage1"]["kid_el0"] > 0]
        if ratios:
            entry["kid_ratio_aligned_to_stage1"] = statistics.fmean(ratios)
        checks[k] = entry
    if "K5" in alignflow and "K10" in alignflow:
        checks["k5_minus_k10_abs"] = 100 * abs(alignflow["K5"]["mdice_mean"] - alignflow["K10"]["mdice_mean"])
    met = {}
    for name, threshold in TARGETS.items():
        values = [checks[name]] if name == "k5_minus_k10_abs" and name in checks else \
            [entry[name] for key, entry in checks.items() if isinstance(entry, dict) and name in entry]
        if values:
            met[name] = all(meets_target(name, v, threshold) for v in values)
    checks["targets"] = TARGETS
    checks["met"] = met
    return checks


def _reuse_stage1(run: RunFolder, earlier_run: Path, config: RunConfig) -> None:
    """Copy trained stage-1 generators (and the judge, when its recipe matches) from an earlier benchmark's run
    folder, after checking that they were trained with the same settings."""
    for target, kind in ((run.image_generator, "image_generator"), (run.mask_generator, "mask_generator")):
        source = Path(earlier_run) / "run" / "checkpoints" / target.name
        if not source.is_file():
            raise RunFolderError(f"has no {target.name} to reuse (expected an earlier benchmark's output folder)",
                                 Path(earlier_run))
        stored = load_checkpoint(source)
        wanted = to_dict(getattr(config, kind))
        same_data = stored.get("meta", {}).get("image_size_px") == config.data.image_size_px
        if json.dumps(stored.get("config"), sort_keys=True) != json.dumps(wanted, sort_keys=True) \
                or stored.get("step") != wanted["num_steps"] or not same_data:
            raise RunFolderError(f"{kind} was trained with other settings than this preset; it cannot be reused",
                                 source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    judge = Path(earlier_run) / "run" / "source_segmenter" / "exported"
    if (judge / "model.json").is_file():
        summary = json.loads((judge / "model.json").read_text()).get("training_summary", {})
        wanted = to_dict(replace(config.segmenter, strong_augment=True))
        if json.dumps(summary.get("config"), sort_keys=True) == json.dumps(wanted, sort_keys=True):
            shutil.copytree(judge, run.source_segmenter / "exported", dirs_exist_ok=True)


def run_polyp_benchmark(data_root: Path, out_dir: Path, preset_name: str, device: torch.device,
                        on_event: EventCallback = ignore_events, overrides: tuple[str, ...] = (),
                        methods: tuple[str, ...] | None = None,
                        reuse_stage1: Path | None = None,
                        reference_sets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the methods of DESIGN.md §2 on the fixed splits; writes results.json and report.html in `out_dir`.

    Args:
        overrides: `section.field=value` settings applied on top of the preset (ablations).
        methods: a subset of METHODS (default all); reference-free methods are skipped when not named.
        reuse_stage1: an earlier benchmark output folder whose stage-1 generators (same settings) are reused.
        reference_sets: keys of splits.json target.references to run instead of the preset's.
    """
    bench = choose("benchmark preset", preset_name, BENCH_PRESETS)
    methods = tuple(methods or METHODS)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UsageError(f"unknown benchmark method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    config, data_root, out_dir = apply_overrides(bench.run, overrides), Path(data_root), Path(out_dir)
    splits, timer, started = read_splits(data_root), Timer(), time.monotonic()
    reference_sets = tuple(reference_sets or bench.reference_sets)
    missing = sorted(set(reference_sets) - set(splits["target"]["references"]))
    if missing:
        raise InputDataError(f"has no reference set(s) {', '.join(missing)}", data_root / "splits.json")
    progress = StageProgress(on_event, "bench", 1)
    source_dir = data_root / splits["source"]["dataset"]
    target_dir = data_root / splits["target"]["dataset"]
    seeds = bench.segmenter_seeds

    # Data, exactly by the split protocol.
    train_ids = splits["source"]["train"][: bench.max_source_pairs]
    test_ids = splits["target"]["test"][: bench.max_test_images]
    source = timer("load_data", lambda: load_pairs(source_dir, config.data, train_ids))
    source_val = timer("load_data", lambda: load_pairs(source_dir, config.data, splits["source"]["val"][:200]))
    test = timer("load_data", lambda: load_pairs(target_dir, config.data, test_ids))
    progress.log(f"{len(source)} source pairs, {len(test)} target test images at {config.data.image_size_px} px")

    # Stage 1 (shared by every reference set) and the mask-consistency judge (strong augmentation).
    run, config, _ = pipeline.start_run(out_dir / "run", config, {"source": str(source_dir)}, resume=False)
    pairs_dir = out_dir / "source_pairs"
    write_pairs(pairs_dir, source.images, source.masks, source.names)
    run.update_inputs(source=str(pairs_dir))
    if reuse_stage1 is not None:
        _reuse_stage1(run, Path(reuse_stage1), config)
    timer("stage1", lambda: pipeline.train_generators(run, device, resume=reuse_stage1 is not None,
                                                      on_event=on_event))
    judge = timer("source_segmenter", lambda: pipeline.ensure_source_segmenter(run, source, config, device, False,
                                                                               on_event))
    judge_val = summarize(*dice_iou(judge.predict_probs(source_val.images) > 0.5, source_val.masks > 0.5))
    count = bench.num_synthetic
    copy_index = torch.arange(count) % len(source)

    def score(name: str, extra=None, segmenter_config: SegmenterConfig = config.segmenter) -> dict[str, Any]:
        return timer("segmenters", lambda: _segmenter_scores(name, source, segmenter_config, seeds, device, test,
                                                             on_event, extra))

    # Methods that ignore the references: trained once, reported under every reference set.
    shared: dict[str, dict] = {}
    if "source_only" in methods:
        shared["source_only"] = score("source_only")
    if "strong_augmentation" in methods:
        shared["strong_augmentation"] = score("strong_augmentation",
                                              segmenter_config=replace(config.segmenter, strong_augment=True))
    if "classic_augmentation" in methods:
        augmented = timer("baselines", lambda: classic_augment(source.images[copy_index], source.masks[copy_index],
                                                               torch.Generator().manual_seed(0)))
        shared["classic_augmentation"] = score("classic", augmented)
    if "stage1_synthetic" in methods:
        stage1_dir = timer("synthesis", lambda: pipeline.synthesize(
            run, device, replace(config.synthesis, num_pairs=count), out_dir / "stage1_pairs", "stage1", on_event))
        stage1_pairs = load_pairs(stage1_dir, config.data)
        shared["stage1_synthetic"] = score("stage1", (stage1_pairs.images, stage1_pairs.masks))

    per_set: dict[str, dict[str, dict]] = {m: {} for m in methods}
    generator_metrics: dict[str, Any] = {}
    align_summaries: dict[str, Any] = {}
    examples: dict[str, dict[str, torch.Tensor]] = {}  # per reference set: pictures for the report
    extractor = load_feature_extractor(config.align.feature_size_px, config.align.style_weight, device)
    for set_name in reference_sets:
        progress.log(f"reference set {set_name}")
        ref_ids = splits["target"]["references"][set_name]
        references = load_references(target_dir / "images", config.data, ref_ids)  # images only, never masks
        for method, scores in shared.items():
            per_set[method][set_name] = scores

        # Non-generative adaptation to the references.
        if "histogram_matching" in methods:
            matched = timer("baselines", lambda: match_histograms(source.images[copy_index], references.images))
            per_set["histogram_matching"][set_name] = score("histogram", (matched, source.masks[copy_index]))
        if "fda" in methods:
            fda = timer("baselines", lambda: fourier_domain_adaptation(source.images[copy_index], references.images))
            per_set["fda"][set_name] = score("fda", (fda, source.masks[copy_index]))
        if "alignflow" not in methods and "alignflow_real_masks" not in methods:
            continue

        # AlignFlow: align to these references, synthesise, train.
        ref_dir = out_dir / "references" / set_name
        write_images(ref_dir / "images", references.images, references.names)
        for stale in (run.align_state, run.aligned_generator):
            stale.unlink(missing_ok=True)
        align_summaries[set_name] = timer("align", lambda: pipeline.align(run, ref_dir, device, on_event=on_event))
        if "alignflow" in methods:
            aligned_dir = timer("synthesis", lambda: pipeline.synthesize(
                run, device, replace(config.synthesis, num_pairs=count), out_dir / f"aligned_{set_name}", "aligned",
                on_event))
            aligned = load_pairs(aligned_dir, config.data)
            per_set["alignflow"][set_name] = score("alignflow", (aligned.images, aligned.masks))
        if "alignflow_real_masks" in methods:
            real_mask_dir = timer("synthesis", lambda: pipeline.synthesize(
                run, device, replace(config.synthesis, num_pairs=count, mask_source="source"),
                out_dir / f"aligned_real_masks_{set_name}", "aligned", on_event))
            real_mask = load_pairs(real_mask_dir, config.data)
            per_set["alignflow_real_masks"][set_name] = score("alignflow_real_masks",
                                                              (real_mask.images, real_mask.masks))

        # Generator metrics against target test images (never seen by the reward).
        generators = {"stage1": pipeline.load_image_generator(run.image_generator, device),
                      "aligned": pipeline.load_image_generator(run.aligned_generator, device)}
        masks = source.masks[torch.arange(min(256, count)) % len(source)]
        comparison = timer("generator_metrics", lambda: compare_generators(
            generators, masks, test.images, extractor, judge, config.synthesis.sampler, device))
        generator_metrics[set_name] = comparison.metrics
        examples[set_name] = {"references": references.images, "masks": comparison.masks,
                              **{name: images for name, images in comparison.images.items()}}

    method_results = {m: {"per_set": per_set[m], "by_k": aggregate(per_set[m])} for m in methods}
    results = {
        "benchmark": "polyp: kvasir_seg -> cvc_clinicdb", "preset": preset_name, "description": bench.description,
        "commit": _git_commit(), "library_version": __version__, "device": _device_name(device),
        "overrides": list(overrides), "stage1_reused_from": None if reuse_stage1 is None else str(reuse_stage1),
        "config": to_dict(config), "reference_sets": list(reference_sets), "segmenter_seeds": seeds,
        "num_source_pairs": len(source), "num_test_images": len(test), "num_synthetic": count,
        "judge_source_val": {"mdice": judge_val["mdice"], "miou": judge_val["miou"]},
        "methods": method_results, "generator": generator_metrics, "align": align_summaries,
        "targets": target_checks(method_results, generator_metrics),
        "wall_time_s": {**timer.seconds, "total": round(time.monotonic() - started, 1)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", results)
    write_bench_report(out_dir / "report.html", results, source, test, examples)
    return results


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
