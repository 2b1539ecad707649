"""The benchmark protocol (bench/PROTOCOL.md, settings in protocol.json) on any labelled source, references and
labelled target test set.

One segmenter recipe for every method, the same segmenter seeds for every method, every reference set of the
protocol, per-image Dice kept for every segmenter, and paired cluster-bootstrap intervals for AlignFlow against its
exact control (stage-1 synthetic), source-only and the best non-generative baseline. Nothing is chosen on the target
test set: alignment's early stopping uses only the references, and the recipe is fixed before the run (checked on
source validation only). Every finished segmenter is a job file, so `--resume` continues a cut-off run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import shutil
import statistics
import subprocess
import time
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import pipeline
from ..baselines.augment import classic_augment
from ..baselines.fda import fourier_domain_adaptation
from ..baselines.histogram import match_histograms
from ..atomic import write_json_atomic
from ..checkpoint import load_checkpoint
from ..config import RunConfig, SegmenterConfig, SynthesisConfig, apply_overrides, from_dict, replace, to_dict
from ..data.folders import ImageSet, PairSet, load_pairs, write_images, write_pairs
from ..device import apply_process_settings, process_settings, set_compile, set_cpu_bf16
from ..errors import AlignFlowError, RunFolderError, UsageError, choose
from ..evaluation import compare_generators
from ..events import EventCallback, StageProgress, ignore_events
from ..presets import DEFAULT, DEMO
from ..reward.features import load_feature_extractor
from ..reward.metrics import image_features
from ..train.align import SELECTIONS
from ..run_folder import RunFolder
from ..segmenter.metrics import dice_iou, summarize
from ..version import __version__
from .methods import METHODS, NON_GENERATIVE, meets_target
from .report import write_bench_report
from .stats import paired_difference
from .workers import WorkerPool, align_reference_set, train_and_score

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def load_protocol() -> dict[str, Any]:
    """The pre-registered settings (protocol.json beside this file); the code reads them, PROTOCOL.md explains them."""
    return json.loads((Path(__file__).with_name("protocol.json")).read_text())


def protocol_reference_sets() -> tuple[str, ...]:
    """Largest K first, so that a cut-off run has the judged K = 10 and K = 5 sets before K = 1."""
    protocol = load_protocol()
    return tuple(f"K{k}_seed{s}" for k in sorted(protocol["reference_k"], reverse=True)
                 for s in protocol["reference_seeds"])


@dataclass(frozen=True)
class BenchPreset:
    run: RunConfig                         # model sizes and steps; the protocol's recipe is applied on top
    num_synthetic_key: str                 # key of protocol.json num_synthetic
    cpu_bf16: bool = False                 # bf16 autocast on a bf16-capable CPU (measured 2x on a generator step)
    compile_on_cuda: bool = False          # torch.compile on CUDA, as --compile (pays off in long runs only)
    max_source_pairs: int | None = None    # cap on source training pairs (smoke only)
    max_test_images: int | None = None     # cap on target test images (smoke only)
    reference_sets: tuple[str, ...] | None = None  # None: all of the protocol's
    segmenter_seeds: int | None = None     # None: the protocol's
    generator_metric_masks: int = 128      # masks (and noise) for FID/KID-EL0 per generator
    description: str = ""


def _size(run: RunConfig, size: int) -> RunConfig:
    return replace(run, data=replace(run.data, image_size_px=size))


_CPU_GENERATOR = replace(DEMO.image_generator, channels=(16, 32, 64, 64), attention_levels=(False,) * 4,
                         norm_num_groups=8, num_steps=1500, batch_size=16, learning_rate=1e-3,
                         ema_halflife_steps=100, checkpoint_every_steps=250)

BENCH_PRESETS = {
    "smoke": BenchPreset(
        replace(DEMO, image_generator=replace(DEMO.image_generator, num_steps=40, checkpoint_every_steps=20),
                mask_generator=replace(DEMO.mask_generator, num_steps=20, checkpoint_every_steps=20,
                                       max_train_iou=1.01),
                align=replace(DEMO.align, num_steps=4, eval_every_steps=2, eval_num_images=8, batch_size=4,
                              feature_size_px=32),
                segmenter=replace(DEMO.segmenter, num_steps=20, ema_halflife_steps=5)),
        "smoke", max_source_pairs=48, max_test_images=32, reference_sets=("K5_seed0", "K10_seed0"),
        segmenter_seeds=2, generator_metric_masks=16,
        description="harness check only: tiny models, numbers mean nothing"),
    "cpu": BenchPreset(
        _size(replace(DEMO, image_generator=_CPU_GENERATOR,
                      mask_generator=replace(DEMO.mask_generator, num_steps=500, checkpoint_every_steps=250),
                      align=replace(DEMO.align, num_steps=60, batch_size=8, eval_every_steps=10, eval_num_images=24,
                                    patience_evals=3, feature_size_px=96, checkpoint_every_steps=20),
                      synthesis=replace(DEMO.synthesis, batch_size=50),
                      segmenter=replace(DEMO.segmenter, num_steps=300, batch_size=16, learning_rate=2e-3,
                                        ema_halflife_steps=30)), 96),
        "cpu", cpu_bf16=True,
        description="96 px, K in {1, 5, 10} x reference seeds 0-2 x 3 segmenter seeds on a 2-core CPU (90 min target)"),
    "gpu": BenchPreset(replace(DEFAULT, segmenter=replace(DEFAULT.segmenter, ema_halflife_steps=200)), "gpu",
                       generator_metric_masks=256, compile_on_cuda=True,
                       description="128 px, the whole protocol on one GPU, compiled (stage 1 alone: 84 ms/step "
                                   "compiled, about 9 min on an H200; more than half an hour in all, not yet run "
                                   "to the end)"),
}


def bench_config(preset_name: str, overrides: tuple[str, ...] = ()) -> RunConfig:
    """The preset's run config with the protocol's preferred segmenter recipe and its alignment settings (v2: the
    reward on deep features only), then explicit `--set` overrides."""
    preset = choose("benchmark preset", preset_name, BENCH_PRESETS)
    protocol = load_protocol()
    recipe = tuple(protocol["segmenter_recipe"]) + tuple(protocol.get("align_recipe", ()))
    return apply_overrides(apply_overrides(preset.run, recipe), overrides)


@dataclass
class BenchData:
    """Everything a benchmark reads, loaded by the caller (polyp splits or plain folders)."""

    name: str
    source: PairSet                         # labelled source training pairs
    source_val: PairSet | None              # labelled source validation pairs (recipe check only)
    test: PairSet                           # labelled target test pairs: scores only, never a choice
    test_clusters: list[str]                # one label per test image: near-duplicate groups (video sequences)
    references: dict[str, ImageSet]         # reference set name (K{k}_seed{s}) → target images, never masks
    source_dir: Path                        # where the source pairs came from (recorded)
    notes: dict[str, Any] = field(default_factory=dict)
    folders: dict[str, str | None] = field(default_factory=dict)  # where the data was read from (→ results "data")


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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def reference_k(set_name: str) -> str:
    return set_name.split("_")[0]


def _same_pair_names(pairs_dir: Path, names: list[str]) -> bool:
    """Whether a pair folder this benchmark wrote (`<name>.png`) holds exactly `names`; True when there is none."""
    images = pairs_dir / "images"
    if not images.is_dir():
        return True
    written = sorted(p.stem for p in images.iterdir() if p.suffix == ".png" and not p.name.startswith("."))
    return written == sorted(names)


def _reuse_stage1(run: RunFolder, earlier_out: Path, config: RunConfig, source_names: list[str]) -> None:
    """Copy trained stage-1 generators (and the judge, when its recipe matches) from an earlier benchmark's output
    folder, after checking that they were trained with the same settings on the same source pairs (the earlier
    folder's `source_pairs/` names them; with `bench pairs` any folder could be passed)."""
    if not _same_pair_names(Path(earlier_out) / "source_pairs", source_names):
        raise RunFolderError("was trained on other source pairs than this benchmark's; its stage 1 cannot be reused",
                             Path(earlier_out))
    for target, kind in ((run.image_generator, "image_generator"), (run.mask_generator, "mask_generator")):
        source = Path(earlier_out) / "run" / "checkpoints" / target.name
        if not source.is_file():
            raise RunFolderError(f"has no {target.name} to reuse (expected an earlier benchmark's output folder)",
                                 Path(earlier_out))
        stored = load_checkpoint(source)
        wanted = getattr(config, kind)
        # Read back through the config class: a setting added since keeps its default, which is what trained it.
        try:
            stored_config = from_dict(type(wanted), stored["config"])
        except (KeyError, TypeError, AlignFlowError) as error:  # none stored, or settings this version lacks
            raise RunFolderError(f"{kind} records no settings this version can compare ({error})", source) from error
        same_data = stored.get("meta", {}).get("image_size_px") == config.data.image_size_px
        if stored_config != wanted or stored.get("step") != wanted.num_steps or not same_data:
            raise RunFolderError(f"{kind} was trained with other settings than this preset; it cannot be reused",
                                 source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    judge = Path(earlier_out) / "run" / "source_segmenter" / "exported"
    if (judge / "model.json").is_file():
        summary = json.loads((judge / "model.json").read_text()).get("training_summary", {})
        wanted_judge = replace(config.segmenter, strong_augment=True)
        recorded = summary.get("config")
        try:  # through the config class, so a segmenter setting added since does not retrain the judge
            same_recipe = recorded is not None and from_dict(type(wanted_judge), recorded) == wanted_judge
        except (KeyError, TypeError, AlignFlowError):  # a recipe this version cannot read
            same_recipe = False
        if same_recipe:
            shutil.copytree(judge, run.source_segmenter / "exported", dirs_exist_ok=True)


class SegmenterJobs:
    """Train-and-score jobs, one JSON file each under OUT/jobs named by seed and a hash of the recipe, so a resumed
    benchmark skips finished ones and never mixes recipes. `run` returns a future: done at once when the job ran
    before or runs here, pending while a worker of `pool` trains it (its JSON is written the moment it finishes)."""

    def __init__(self, root: Path, data: BenchData, device: torch.device, on_event: EventCallback, timer: Timer,
                 pool: WorkerPool | None = None):
        self.root, self.data, self.device, self.on_event, self.timer = root, data, device, on_event, timer
        self.pool = pool

    def run(self, method: str, set_name: str, config: SegmenterConfig, seed_offset: int,
            extra: tuple[torch.Tensor, torch.Tensor] | None = None, score_test: bool = True) -> Future:
        recipe = hashlib.sha1(json.dumps(to_dict(replace(config, seed=0)), sort_keys=True).encode()).hexdigest()[:8]
        path = self.root / method / set_name / f"seed{config.seed + seed_offset}-{recipe}.json"
        seeded = replace(config, seed=config.seed + seed_offset)
        if path.is_file():
            return _done(json.loads(path.read_text()))
        if self.pool is not None:
            future = self.pool.submit(method, set_name, seeded, extra, score_test)
            future.add_done_callback(lambda done: not done.cancelled() and done.exception() is None
                                     and write_json_atomic(path, done.result()))
            return future
        job = self.timer("segmenters", lambda: train_and_score(
            self.data.source, self.data.test, self.data.source_val, self.device, method, set_name, seeded, extra,
            score_test, self.on_event))
        write_json_atomic(path, job)
        return _done(job)


def pairs_made(folder: Path, synthesis: SynthesisConfig) -> bool:
    """Whether `folder` already holds the pairs `synthesis` makes (a resumed benchmark skips them). Pairs made with
    other settings (say a copied folder resumed with another `--set synthesis.…`) stop the run: they would be scored
    as if new, and their segmenter jobs, keyed by the segmenter recipe alone, would be reused with them."""
    manifest = Path(folder) / "manifest.json"
    if not manifest.is_file():
        return False
    stored = to_dict(from_dict(SynthesisConfig, json.loads(manifest.read_text()).get("config", {})))
    wanted = to_dict(synthesis)
    differ = sorted(name for name in wanted if name != "batch_size" and stored.get(name) != wanted[name])
    if differ:
        raise RunFolderError(f"holds pairs made with other synthesis settings ({', '.join(differ)}); choose a new "
                             f"--out", Path(folder))
    return True


def _done(job: dict[str, Any]) -> Future:
    future: Future = Future()
    future.set_result(job)
    return future


def summarize_method(jobs: dict[str, list[dict]]) -> dict[str, Any]:
    """Per K: means over reference sets × segmenter seeds, and the population std over those segmenters."""
    by_k: dict[str, dict[tuple, dict]] = {}
    for set_name, runs in jobs.items():  # a reference-free method's runs appear under every set: count them once
        by_k.setdefault(reference_k(set_name), {}).update({(r["reference_set"], r["seed"]): r for r in runs})
    by_k = {k: list(runs.values()) for k, runs in by_k.items()}
    return {k: {"mdice_mean": statistics.fmean(r["mdice"] for r in runs),
                "mdice_std": statistics.pstdev([r["mdice"] for r in runs]),
                "miou_mean": statistics.fmean(r["miou"] for r in runs),
                "miou_std": statistics.pstdev([r["miou"] for r in runs]),
                "num_reference_sets": len({r["reference_set"] for r in runs}) if runs else 0,
                "num_runs": len(runs)} for k, runs in by_k.items()}


def stored_dice_array(per_image: dict, method: str, set_names: list[str],
                      seeds: list[str] | None = None) -> np.ndarray:
    """(reference sets, seeds, images) from a per_image_dice.json's contents; a reference-free method ("all") is
    repeated over the sets. Seeds default to the method's own, sorted by number."""
    per_set = per_image["dice"][method]
    seeds = seeds or sorted(next(iter(per_set.values())), key=int)
    return np.array([[per_set["all" if "all" in per_set else name][seed] for seed in seeds] for name in set_names])


def default_segmenter_seeds(preset_name: str) -> int:
    """The preset's segmenter seed count, else the protocol's: what the recipe check uses and what is not an
    ablation."""
    preset = BENCH_PRESETS.get(preset_name)
    return (preset and preset.segmenter_seeds) or load_protocol()["segmenter_seeds"]


def _dice_array(jobs: dict[str, list[dict]], set_names: list[str]) -> np.ndarray:
    """(reference sets, seeds, images) per-image Dice, seeds sorted so that seed s meets seed s."""
    return np.array([[run["dice"] for run in sorted(jobs[name], key=lambda r: r["seed"])] for name in set_names])


def paired_comparisons(per_set: dict[str, dict[str, list[dict]]], clusters: list[str],
                       bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per K: AlignFlow − every other method, paired by reference set, seed and image, with cluster-bootstrap CIs;
    the best non-generative method (highest mean on that K) is named."""
    out: dict[str, dict[str, Any]] = {}
    alignflow = per_set.get("alignflow", {})
    ks = sorted({reference_k(name) for name in alignflow}, key=lambda k: int(k[1:]))
    for k in ks:
        set_names = sorted(name for name in alignflow if reference_k(name) == k)
        mine = _dice_array(alignflow, set_names)
        entry: dict[str, Any] = {}
        for method, jobs in per_set.items():
            if method == "alignflow":
                continue
            names = [n if n in jobs else "all" for n in set_names]
            if not all(n in jobs for n in names):
                continue
            other = _dice_array(jobs, names)
            if other.shape != mine.shape:
                continue
            entry[method] = paired_difference(mine, other, clusters, bootstrap["resamples"], bootstrap["seed"],
                                              bootstrap["confidence"]).as_dict()
        non_generative = {m: -entry[m]["mean_diff"] for m in NON_GENERATIVE if m in entry}
        if non_generative:
            best = max(non_generative, key=non_generative.get)
            entry["best_non_generative"] = {**entry[best], "method": best}
        out[k] = entry
    return out


def win_checks(by_k_paired: dict[str, dict[str, Any]], alignflow_by_k: dict[str, Any],
               generator: dict[str, Any]) -> dict[str, Any]:
    """The protocol's win rule per K (gains in the scores' units, lower CI end above zero) and |K5 − K10|; the
    DESIGN.md KID-EL0 ratio is reported beside it."""
    rule = load_protocol()["win"]
    checks: dict[str, Any] = {"rule": rule}
    all_met = True
    for k in rule["ks"]:
        paired = by_k_paired.get(k)
        if not paired:
            all_met = False
            continue
        entry = {}
        for other, gain in rule["min_gain"].items():
            result = paired.get(other)
            if result is None:
                entry[other] = {"met": False, "reason": "not run"}
                all_met = False
                continue
            met = result["mean_diff"] >= gain and result["ci_low"] > rule["ci_low_above"]
            entry[other] = {"mean_diff": result["mean_diff"], "ci_low": result["ci_low"], "min_gain": gain,
                            "met": met, **({"method": result["method"]} if "method" in result else {})}
            all_met &= met
        ratios = [g["aligned"]["kid_el0"] / g["stage1"]["kid_el0"] for name, g in generator.items()
                  if reference_k(name) == k and g["stage1"]["kid_el0"] > 0]
        if ratios:
            ratio = statistics.fmean(ratios)
            entry["kid_ratio_aligned_to_stage1"] = {"value": ratio,
                                                    "met": meets_target("kid_ratio_aligned_to_stage1", ratio, 0.5)}
        checks[k] = entry
    if "K5" in alignflow_by_k and "K10" in alignflow_by_k:
        gap = abs(alignflow_by_k["K5"]["mdice_mean"] - alignflow_by_k["K10"]["mdice_mean"])
        checks["k5_minus_k10_abs"] = {"value": gap, "max": rule["max_k5_minus_k10"],
                                      "met": gap <= rule["max_k5_minus_k10"]}
        all_met &= gap <= rule["max_k5_minus_k10"]
    else:
        all_met = False
    checks["all_met"] = all_met
    return checks


def run_benchmark(data: BenchData, out_dir: Path, preset_name: str, device: torch.device,
                  on_event: EventCallback = ignore_events, overrides: tuple[str, ...] = (),
                  methods: tuple[str, ...] | None = None, reuse_stage1: Path | None = None,
                  reference_sets: tuple[str, ...] | None = None, resume: bool = False,
                  workers: int = 1, segmenter_seeds: int | None = None) -> dict[str, Any]:
    """Run the protocol; writes results.json, per_image_dice.json and report.html in `out_dir`.

    Args:
        overrides: `section.field=value` settings applied after the preset and the recipe (ablations; recorded).
        methods: a subset of METHODS (default: the protocol's).
        reuse_stage1: an earlier benchmark output folder whose stage-1 generators (same settings) are reused.
        reference_sets: a subset of `data.references` (default: the preset's, else all).
        resume: continue a cut-off benchmark in `out_dir` (finished jobs are kept).
        segmenter_seeds: segmenter seeds per method and reference set (default: the preset's, else the protocol's);
            more seeds narrow only the part of an interval that comes from seeds. The recipe check keeps the
            default count, so the recipe cannot change with it.
        workers: processes (one per GPU on CUDA) that align each reference set and train the segmenter jobs,
            while this one trains stage 1, samples and scores the generators.

    The preset's process-wide precision and compile choices hold only while it runs: a caller that trains next in
    the same process gets its own back.
    """
    saved = process_settings()
    try:
        return _run_benchmark(data, out_dir, preset_name, device, on_event, overrides, methods, reuse_stage1,
                              reference_sets, resume, workers, segmenter_seeds)
    finally:
        apply_process_settings(saved)


def _run_benchmark(data: BenchData, out_dir: Path, preset_name: str, device: torch.device, on_event: EventCallback,
                   overrides: tuple[str, ...], methods: tuple[str, ...] | None, reuse_stage1: Path | None,
                   reference_sets: tuple[str, ...] | None, resume: bool, workers: int,
                   segmenter_seeds: int | None) -> dict[str, Any]:
    protocol, bench = load_protocol(), choose("benchmark preset", preset_name, BENCH_PRESETS)
    methods = tuple(methods or protocol["methods"])
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UsageError(f"unknown benchmark method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    recipe = tuple(protocol["segmenter_recipe"])
    config = bench_config(preset_name, overrides)
    out_dir = Path(out_dir)
    reference_sets = tuple(reference_sets or bench.reference_sets or tuple(data.references))
    missing = sorted(set(reference_sets) - set(data.references))
    if missing:
        raise UsageError(f"no reference set(s) {', '.join(missing)}; available: {', '.join(sorted(data.references))}")
    check_seeds = default_segmenter_seeds(preset_name)
    seeds = check_seeds if segmenter_seeds is None else segmenter_seeds
    if seeds < 1:
        raise UsageError(f"segmenter seeds {seeds}: must be at least 1")
    count = protocol["num_synthetic"][bench.num_synthetic_key]
    bf16 = set_cpu_bf16(bench.cpu_bf16) if device.type == "cpu" else False
    if bench.compile_on_cuda and device.type == "cuda":
        set_compile(True)  # workers inherit it; the segmenter and mask generator train eager (device.set_compile)
    timer, started = Timer(), time.monotonic()
    commit = _git_commit()  # the code this process runs, even if the checkout moves on during a long run
    progress = StageProgress(on_event, "bench", 1)
    source, test = data.source, data.test
    progress.log(f"{len(source)} source pairs, {len(test)} target test images in {len(set(data.test_clusters))} "
                 f"clusters at {config.data.image_size_px} px; {len(reference_sets)} reference sets × {seeds} seeds")

    # Stage 1, shared by every reference set, and the mask-consistency judge.
    run_exists = RunFolder(out_dir / "run").has_checkpoints()
    if run_exists and not resume:
        raise RunFolderError("already holds a benchmark; add --resume to continue it or choose a new --out",
                             out_dir)
    if not _same_pair_names(out_dir / "source_pairs", source.names):  # stage 1 and the anchor read that copy
        raise RunFolderError("holds the source pairs of another --source; choose a new --out", out_dir)
    run, config, stored_inputs = pipeline.start_run(out_dir / "run", config, {"source": str(data.source_dir)},
                                                    resume=run_exists)
    pairs_dir = out_dir / "source_pairs"
    if not (pairs_dir / "images").is_dir():
        write_pairs(pairs_dir, source.images, source.masks, source.names)
    # A resumed folder keeps its stored settings, so it keeps the protocol version they came from (folders made
    # before versions were stored are all version 1).
    protocol_version = stored_inputs.get("protocol_version", 1 if run_exists else protocol["version"])
    run.update_inputs(source=str(pairs_dir), protocol_version=protocol_version)
    if reuse_stage1 is not None and not run_exists:
        _reuse_stage1(run, Path(reuse_stage1), config, source.names)
    timer("stage1", lambda: pipeline.train_generators(run, device, resume=True, on_event=on_event))
    judge = timer("source_segmenter", lambda: pipeline.ensure_source_segmenter(run, source, config, device, True,
                                                                               on_event))
    with WorkerPool.optional(workers, device, source, test, data.source_val) as pool:
        jobs = SegmenterJobs(out_dir / "jobs", data, device, on_event, timer, pool)
        pending: dict[str, dict[str, list[Future]]] = {m: {} for m in methods}
        copy_index = torch.arange(count) % len(source)

        def score(method: str, set_name: str, extra=None) -> None:
            pending[method][set_name] = [jobs.run(method, set_name, config.segmenter, offset, extra)
                                         for offset in range(seeds)]

        # The segmenter recipe, chosen on source validation only (PROTOCOL.md): the preferred recipe unless it loses
        # more than `max_source_val_loss` mDice there to the alternative. Explicit --set settings always win.
        rule = protocol["recipe_check"]
        recipe_check: dict[str, Any] = {"preferred": list(recipe), "alternative": rule["alternative"],
                                        "max_source_val_loss": rule["max_source_val_loss"], "chosen": "preferred"}
        if data.source_val is not None and len(data.source_val):
            candidates = {"preferred": config.segmenter,
                          "alternative": apply_overrides(config, tuple(rule["alternative"])).segmenter}
            checks = {name: [jobs.run("source_only", "all", candidate, offset) for offset in range(check_seeds)]
                      for name, candidate in candidates.items()}
            val = {name: statistics.fmean(f.result()["source_val_mdice"] for f in futures)
                   for name, futures in checks.items()}
            passed = val["preferred"] >= val["alternative"] - rule["max_source_val_loss"]
            recipe_check.update(source_val_mdice_preferred=val["preferred"],
                                source_val_mdice_alternative=val["alternative"], passed=passed,
                                chosen="preferred" if passed else "alternative")
            if not passed:
                config = replace(config, segmenter=candidates["alternative"])
            progress.log(f"recipe check on source validation: {val['preferred']:.3f} (preferred) vs "
                         f"{val['alternative']:.3f} (alternative): using the {recipe_check['chosen']} recipe")
        # Explicit settings win over the recipe rule, also when a resumed run's stored config was read back.
        config = apply_overrides(config, overrides)

        # Alignment, one job per reference set not yet aligned: all queued at once when there are workers (each
        # set is independent; queued before the segmenter jobs so the sets are ready early), else run here just
        # before its set is used, so that a cut-off run has whole sets. A set is done when its summary and
        # generator are both there (older runs wrote the summary first).
        needs_alignment = "alignflow" in methods or "alignflow_real_masks" in methods

        def set_dir_of(set_name: str) -> Path:
            return out_dir / "aligned" / set_name

        def aligned(set_name: str) -> bool:
            return all((set_dir_of(set_name) / name).is_file()
                       for name in ("align_summary.json", "aligned_generator.pt"))

        to_align = [name for name in reference_sets if needs_alignment and not aligned(name)]
        for name in set(reference_sets) - set(to_align):  # a kill between a set's summary and its state's removal
            (set_dir_of(name) / "align_state.pt").unlink(missing_ok=True)
        condition_masks = None  # made only when something is aligned: a resumed benchmark may need none
        if to_align:
            condition_masks = timer("synthesis", lambda: pipeline.alignment_masks(run, config, source, device))
        alignments: dict[str, Future] = {}
        for set_name in to_align:
            ref_dir = out_dir / "references" / set_name
            write_images(ref_dir / "images", data.references[set_name].images, data.references[set_name].names)
            if pool is not None:
                alignments[set_name] = pool.submit_alignment(run.root, ref_dir, set_dir_of(set_name), condition_masks)
        if alignments:
            progress.log(f"aligning {len(alignments)} reference sets in {pool.workers} workers")

        def wait_for_alignment(set_name: str) -> None:
            if set_name in alignments:  # aligned in a worker: this process only waits
                timer("align_wait", alignments[set_name].result)
            elif set_name in to_align:
                timer("align", lambda: align_reference_set(run.root, out_dir / "references" / set_name,
                                                           set_dir_of(set_name), device, condition_masks, on_event))

        # Reference-free methods: trained once, paired with every reference set.
        if "source_only" in methods:
            score("source_only", "all")
        if "classic_augmentation" in methods:
            augmented = timer("baselines", lambda: classic_augment(source.images[copy_index], source.masks[copy_index],
                                                                   torch.Generator().manual_seed(0)))
            score("classic_augmentation", "all", augmented)
        synthesis = replace(config.synthesis, num_pairs=count)
        if "stage1_synthetic" in methods:
            stage1_dir = out_dir / "stage1_pairs"
            if not pairs_made(stage1_dir, synthesis):
                timer("synthesis", lambda: pipeline.synthesize(run, device, synthesis, stage1_dir, "stage1", on_event))
            stage1_pairs = load_pairs(stage1_dir, config.data)
            score("stage1_synthetic", "all", (stage1_pairs.images, stage1_pairs.masks))

        # Reference-dependent methods.
        generator_metrics: dict[str, Any] = {}
        align_summaries: dict[str, Any] = {}
        examples: dict[str, dict[str, torch.Tensor]] = {}
        extractor = load_feature_extractor(config.align.feature_size_px, config.align.style_weight, device,
                                           config.align.style_region)
        metric_masks = source.masks[torch.arange(min(bench.generator_metric_masks, count)) % len(source)]
        stage1_metrics, test_features = None, None

        for set_name in reference_sets:
            progress.log(f"reference set {set_name}")
            references = data.references[set_name]
            if "histogram_matching" in methods:
                matched = timer("baselines", lambda: match_histograms(source.images[copy_index], references.images))
                score("histogram_matching", set_name, (matched, source.masks[copy_index]))
            if "fda" in methods:
                fda = timer("baselines", lambda: fourier_domain_adaptation(source.images[copy_index],
                                                                           references.images))
                score("fda", set_name, (fda, source.masks[copy_index]))
            if not needs_alignment:
                continue

            # AlignFlow: align to these references (images only), synthesise with stage 1's masks and noise, train.
            # It follows `synthesis.mask_source` (and a translation's start time) exactly as stage1_synthetic does,
            # so the control stays exact under those ablations; alignflow_real_masks always takes real masks. Under
            # `synthesis.judge_keep_fraction` < 1 both draw the same candidates but each keeps its own best ones.
            set_dir = set_dir_of(set_name)
            wait_for_alignment(set_name)
            generator_file = set_dir / "aligned_generator.pt"
            align_summaries[set_name] = json.loads((set_dir / "align_summary.json").read_text())
            for method, mask_source in (("alignflow", synthesis.mask_source), ("alignflow_real_masks", "source")):
                if method not in methods:
                    continue
                pairs_out = set_dir / f"pairs_{mask_source}_masks"
                method_synthesis = replace(synthesis, mask_source=mask_source)
                if not pairs_made(pairs_out, method_synthesis):
                    timer("synthesis", lambda: pipeline.synthesize(run, device, method_synthesis, pairs_out, "aligned",
                                                                   on_event, checkpoint=generator_file))
                made = load_pairs(pairs_out, config.data)
                score(method, set_name, (made.images, made.masks))

            # Generator metrics against target test images (never seen by the reward).
            generators = {"aligned": pipeline.load_image_generator(generator_file, device)}
            if stage1_metrics is None:
                generators["stage1"] = pipeline.load_image_generator(run.image_generator, device)
            if test_features is None:  # the same test images for every set: their features once
                test_features = timer("generator_metrics", lambda: image_features(extractor, test.images))
            comparison = timer("generator_metrics", lambda: compare_generators(
                generators, metric_masks, test.images, extractor, judge, config.synthesis.sampler, device,
                target_features=test_features))
            if stage1_metrics is None:
                stage1_metrics = (comparison.metrics["stage1"], comparison.images["stage1"])
            generator_metrics[set_name] = {"stage1": stage1_metrics[0], "aligned": comparison.metrics["aligned"]}
            examples[set_name] = {"references": references.images, "masks": metric_masks,
                                  "stage1": stage1_metrics[1], "aligned": comparison.images["aligned"]}

        # Wait for the segmenter jobs still running in workers.
        waiting = [f for sets in pending.values() for futures in sets.values() for f in futures if not f.done()]
        if waiting:
            progress.log(f"waiting for {len(waiting)} segmenter jobs in {jobs.pool.workers} workers")
            wait_started, waited = time.monotonic(), StageProgress(on_event, "segmenter jobs", len(waiting))
            for finished, _ in enumerate(as_completed(waiting), 1):
                waited.update(finished)
            timer.seconds["segmenters_wait"] = round(time.monotonic() - wait_started, 1)
        per_set = {m: {name: [f.result() for f in futures] for name, futures in sets.items()}
                   for m, sets in pending.items()}

        # Results: per-set jobs ("all" = reference-free) expanded so that every K has every method.
        expanded = {m: ({name: sets["all"] for name in reference_sets} if list(sets) == ["all"] else sets)
                    for m, sets in per_set.items() if sets}
        bootstrap = protocol["bootstrap"]
        paired = timer("statistics", lambda: paired_comparisons(per_set, data.test_clusters, bootstrap))
        method_results: dict[str, Any] = {}
        for method, sets in expanded.items():
            by_k = summarize_method({name: runs for name, runs in sets.items() if name in reference_sets})
            if method == "alignflow":
                for k, entry in by_k.items():
                    entry["paired"] = paired.get(k, {})
            method_results[method] = {"by_k": by_k, "per_set": {
                name: {"mdice": statistics.fmean(r["mdice"] for r in runs),
                       "miou": statistics.fmean(r["miou"] for r in runs),
                       "runs": [{"seed": r["seed"], "mdice": r["mdice"], "miou": r["miou"],
                                 **({"source_val_mdice": r["source_val_mdice"]} if "source_val_mdice" in r else {})}
                                for r in runs]} for name, runs in sets.items()}}
        alignflow_by_k = method_results.get("alignflow", {}).get("by_k", {})
        seen_before = set(data.notes.get("reference_sets_seen_before_protocol", []))
        results = {
            "benchmark": data.name, "data": dict(data.folders), "preset": preset_name,
            "description": bench.description,
            "protocol_version": protocol_version, "commit": commit, "library_version": __version__,
            "device": _device_name(device), "cpu_bf16": bf16,
            "compiled": process_settings()["compile_backend"] is not None, "overrides": list(overrides),
            "stage1_reused_from": None if reuse_stage1 is None else str(reuse_stage1),
            "config": to_dict(config), "reference_sets": list(reference_sets),
            "reference_sets_seen_before_protocol": sorted(seen_before & set(reference_sets)),
            "segmenter_seeds": seeds, "num_source_pairs": len(source), "num_test_images": len(test),
            "num_test_clusters": len(set(data.test_clusters)), "num_synthetic": count,
            "bootstrap": bootstrap, "recipe_check": recipe_check,
            "judge_source_val": _judge_val(judge, data.source_val),
            "methods": method_results, "generator": generator_metrics,
            "align_selection": {"rule": f"{SELECTIONS[config.align.selection]} (references only; target test never "
                                        "read)",
                                **align_summaries},
            "win": win_checks({k: v.get("paired", {}) for k, v in alignflow_by_k.items()}, alignflow_by_k,
                              generator_metrics),
            "wall_time_s": {**timer.seconds, "total": round(time.monotonic() - started, 1)},
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "results.json", results)
        write_json_atomic(out_dir / "per_image_dice.json", {
            "test_names": test.names, "clusters": data.test_clusters,
            "dice": {m: {name: {str(r["seed"]): r["dice"] for r in runs} for name, runs in sets.items()}
                     for m, sets in per_set.items()}})
        write_bench_report(out_dir / "report.html", results, source, test, examples)
        return results


def _judge_val(judge, source_val: PairSet | None) -> dict[str, float] | None:
    if source_val is None or not len(source_val):
        return None
    scores = summarize(*dice_iou(judge.predict_probs(source_val.images) > 0.5, source_val.masks > 0.5))
    return {"mdice": scores["mdice"], "miou": scores["miou"]}
