"""`alignflow demo`: the whole pipeline on the embedded phantom domains, with a report that shows alignment working."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import pipeline
from .bench.stats import paired_difference
from .config import RunConfig, to_dict
from .data.folders import load_pairs, load_references
from .data.phantoms import write_phantom_dataset
from .evaluation import compare_generators
from .events import EventCallback, StageProgress, ignore_events
from .presets import DEMO
from .reward.features import load_feature_extractor
from .report import mask_pictures, pictures, svg_curve, table, write_report
from .run_folder import RunFolder
from .checkpoint import load_checkpoint
from .segmenter.export import ExportedSegmenter
from .segmenter.train import evaluate_segmenter, train_segmenter


def run_demo(out_dir: Path, device: torch.device, config: RunConfig = DEMO, num_source: int = 200,
             num_references: int = 10, num_target_test: int = 100, num_compare: int = 64, resume: bool = False,
             on_event: EventCallback = ignore_events) -> dict[str, Any]:
    """Phantoms → stage 1 → stage 2 → synthesis → segmenters; returns the metric table and writes report.html.

    The segmenter table compares one recipe (the run's segmenter config, one seed) three ways: source only, + stage-1
    synthetic pairs, + aligned synthetic pairs (same masks and noise), with paired differences and 95 % intervals.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    paths = write_phantom_dataset(out_dir / "data", config.data.image_size_px, num_source, num_references,
                                  num_target_test, seed=0)
    run, config, inputs = pipeline.start_run(out_dir / "run", config, {"source": str(paths.source),
                                                                       "references": str(paths.references),
                                                                       "test": str(paths.target_test)}, resume)
    pipeline.train_generators(run, device, resume, on_event)
    pipeline.align(run, paths.references, device, resume, on_event)

    # Before vs after alignment, on target images the reward never saw.
    progress = StageProgress(on_event, "evaluate", 1)
    progress.log("comparing stage-1 and aligned generators on held-out target images")
    source = load_pairs(paths.source, config.data)
    references = load_references(paths.references, config.data)
    target_test = load_pairs(paths.target_test, config.data)
    generators = {"stage1": pipeline.load_image_generator(run.image_generator, device),
                  "aligned": pipeline.load_image_generator(run.aligned_generator, device)}
    source_segmenter = ExportedSegmenter.load(run.source_segmenter / "exported", device=device)
    extractor = load_feature_extractor(config.align.feature_size_px, config.align.style_weight, device,
                                       config.align.style_region)
    compare_masks = source.masks[torch.arange(num_compare) % len(source)]
    comparison = compare_generators(generators, compare_masks, target_test.images, extractor, source_segmenter,
                                    config.synthesis.sampler, device)

    # Synthesis, and one segmenter recipe three ways: source only, + stage-1 synthetic, + aligned synthetic.
    stage1_dir = pipeline.synthesize(run, device, out_dir=run.root / "synthetic_stage1", generator="stage1",
                                     on_event=on_event)
    aligned_dir = pipeline.synthesize(run, device, on_event=on_event)
    exported = pipeline.train_final_segmenter(run, device, resume=resume, on_event=on_event)
    scores = {
        "source_only": _score(train_segmenter(source.images, source.masks, config.segmenter, device, on_event,
                                              stage="segmenter:source_only"), target_test, device),
        "source_plus_stage1_synthetic": _score(train_segmenter(
            source.images, source.masks, config.segmenter, device, on_event, stage="segmenter:stage1",
            synthetic_images=(stage1 := load_pairs(stage1_dir, config.data)).images,
            synthetic_masks=stage1.masks), target_test, device),
        "source_plus_aligned_synthetic": pipeline.evaluate_exported(exported, paths.target_test, device),
    }
    aligned = np.asarray(scores["source_plus_aligned_synthetic"]["dice"])[None, None]
    differences = {f"aligned_minus_{other}": paired_difference(
        aligned, np.asarray(scores[other]["dice"])[None, None], target_test.names).as_dict()
        for other in ("source_only", "source_plus_stage1_synthetic")}

    before, after = comparison.metrics["stage1"], comparison.metrics["aligned"]
    metrics = {
        "generator": comparison.metrics,
        "target_test": {name: {"mdice": r["mdice"], "miou": r["miou"]} for name, r in scores.items()},
        "target_test_differences": differences,
        "segmenter_recipe": to_dict(config.segmenter),
        "wall_time_s": round(time.monotonic() - started, 1),
        "device": str(device),
    }
    run.update_metrics(**metrics)
    rows = [
        ["MMD² (EL0 features) to held-out target ↓", before["mmd_el0"], after["mmd_el0"]],
        ["KID-EL0 to held-out target ↓", before["kid_el0"], after["kid_el0"]],
        ["FID-EL0 to held-out target ↓", before["fid_el0"], after["fid_el0"]],
        ["mask consistency (Dice of source segmenter) ↑", before["mask_consistency_dice"],
         after["mask_consistency_dice"]],
    ]
    levels = len(before["patch_swd"])  # finest first, low-pass last
    names = ["finest"] + ["middle"] * (levels - 2) + ["low-pass"] if levels > 1 else ["low-pass"]
    rows += [[f"patch SWD ×1000 to held-out target, {name} ↓", b, a]
             for name, b, a in zip(names, before["patch_swd"], after["patch_swd"])]
    seg_rows = [[SEGMENTER_LABELS[name], r["mdice"], r["miou"]] for name, r in scores.items()]
    diff_rows = [[DIFFERENCE_LABELS[name], d["mean_diff"], d["ci_low"], d["ci_high"]]
                 for name, d in differences.items()]
    metrics["table"] = format_table(rows, seg_rows, diff_rows)
    _write_demo_report(run, source, references, target_test, comparison, rows, seg_rows, diff_rows)
    return metrics


SEGMENTER_LABELS = {"source_only": "source only",
                    "source_plus_stage1_synthetic": "source + stage-1 synthetic (no alignment)",
                    "source_plus_aligned_synthetic": "source + aligned synthetic"}
DIFFERENCE_LABELS = {"aligned_minus_source_only": "aligned − source only",
                     "aligned_minus_source_plus_stage1_synthetic": "aligned − stage-1 synthetic"}


def _score(model: torch.nn.Module, pairs, device: torch.device) -> dict[str, Any]:
    return evaluate_segmenter(model, pairs.images, pairs.masks, device)


def format_table(rows: list[list[Any]], seg_rows: list[list[Any]], diff_rows: list[list[Any]]) -> str:
    """The metric table as plain text (what the CLI prints)."""
    lines = [f"{'generator metric':<50} {'before':>10} {'after':>10}"]
    lines += [f"{name:<50} {b:>10.4f} {a:>10.4f}" for name, b, a in rows]
    lines += ["", f"{'segmenter on target test (one recipe, one seed)':<50} {'mDice':>10} {'mIoU':>10}"]
    lines += [f"{name:<50} {d:>10.4f} {i:>10.4f}" for name, d, i in seg_rows]
    lines += ["", f"{'paired mDice difference':<50} {'mean':>10} {'95 % CI (bootstrap over images)':>32}"]
    lines += [f"{name:<50} {m:>+10.4f} {f'[{lo:+.4f}, {hi:+.4f}]':>32}" for name, m, lo, hi in diff_rows]
    return "\n".join(lines)


def _write_demo_report(run: RunFolder, source, references, target_test, comparison, rows, seg_rows,
                       diff_rows) -> None:
    config, _ = run.load_config()
    synthetic = load_pairs(run.synthetic, config.data)
    stage1_state = load_checkpoint(run.image_generator)
    mask_state = load_checkpoint(run.mask_generator)
    aligned_state = load_checkpoint(run.aligned_generator)
    history = aligned_state["align"]["history"]
    sections = [
        ("Metrics", table(rows, ["", "before alignment", "after alignment"])
         + "<p>Generated images (same masks and noise) against target images the reward never saw.</p>"
         + table(seg_rows, ["segmenter (one recipe, one seed)", "target mDice", "target mIoU"])
         + table(diff_rows, ["paired mDice difference", "mean", "95 % CI low", "95 % CI high"])),
        ("Source pairs (mask outlined)", pictures(source.images, source.masks)),
        ("Target references (the only target data used)", pictures(references.images)),
        ("Generated before alignment (stage 1)", pictures(comparison.images["stage1"], comparison.masks)),
        ("Generated after alignment", pictures(comparison.images["aligned"], comparison.masks)),
        ("Held-out target images (for comparison, never used in training)",
         pictures(target_test.images, target_test.masks)),
        ("Generated masks", mask_pictures(synthetic.masks, 24, 12)),
        ("Synthetic pairs used to train the segmenter", pictures(synthetic.images, synthetic.masks)),
        ("Loss curves", svg_curve(stage1_state["history"]["step"], stage1_state["history"]["loss"],
                                  "stage 1 flow-matching loss")
         + svg_curve(mask_state["history"]["step"], mask_state["history"]["loss"], "mask generator loss")
         + svg_curve(history["step"], history["mmd"], "stage 2 reward MMD²")
         + svg_curve(history["eval_step"], history["heldout_mmd"], "stage 2 held-out MMD²")),
    ]
    write_report(run.report_path, "AlignFlow demo: phantom source → phantom target", sections)
