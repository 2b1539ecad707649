"""Benchmark tables: the HTML report beside results.json, and the README table made from all results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import pictures, table, write_report

METHOD_LABELS = {
    "source_only": "source only",
    "classic_augmentation": "source + classic augmentation",
    "histogram_matching": "source + histogram matching to refs",
    "fda": "source + FDA to refs",
    "stage1_synthetic": "source + stage-1 synthetic (no alignment)",
    "alignflow": "source + AlignFlow synthetic",
    "alignflow_real_masks": "ablation: AlignFlow with real source masks",
}


def method_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per method and K: mDice and mIoU as mean ± spread over reference seeds (in %)."""
    rows = []
    for method, label in METHOD_LABELS.items():
        for k, scores in sorted(results["methods"][method]["by_k"].items(), key=lambda kv: int(kv[0][1:])):
            rows.append([label, k, f"{100 * scores['mdice_mean']:.1f} ± {100 * scores['mdice_std']:.1f}",
                         f"{100 * scores['miou_mean']:.1f} ± {100 * scores['miou_std']:.1f}", scores["num_seeds"]])
    return rows


def generator_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for set_name, metrics in results["generator"].items():
        for which in ("stage1", "aligned"):
            m = metrics[which]
            rows.append([set_name, which, m["fid_el0"], m["kid_el0"], m["mmd_el0"], m["mask_consistency_dice"]])
    return rows


def write_bench_report(path: Path, results: dict[str, Any], source, test) -> Path:
    sections = [
        ("Setup", f"<p>preset <b>{results['preset']}</b> ({results['description']}), device {results['device']}, "
                  f"commit {results['commit'][:12]}, {results['num_source_pairs']} source pairs, "
                  f"{results['num_test_images']} target test images, {results['num_synthetic']} synthetic pairs "
                  f"per method, wall time {results['wall_time_s']['total']} s.</p>"),
        ("Target-domain segmentation (target.test)",
         table(method_rows(results), ["method", "K", "mDice %", "mIoU %", "seeds"])),
        ("Generator vs target test images (EfficientNet-Lite0 features; not comparable to Inception FID)",
         table(generator_rows(results), ["references", "generator", "FID-EL0", "KID-EL0", "MMD²-EL0",
                                         "mask consistency Dice"])),
        ("Wall time per stage (s)", table(sorted(results["wall_time_s"].items()), ["stage", "seconds"])),
        ("Source pairs", pictures(source.images, source.masks)),
        ("Target test images", pictures(test.images, test.masks)),
    ]
    return write_report(path, f"AlignFlow benchmark: {results['benchmark']}", sections)


def readme_table(results_dir: Path) -> str:
    """A Markdown table from every `*/results.json` under `results_dir`, naming device and preset."""
    lines = []
    for path in sorted(Path(results_dir).glob("*/results.json")):
        results = json.loads(path.read_text())
        lines.append(f"\n**{path.parent.name}** — preset `{results['preset']}`, device {results['device']}, "
                     f"{results['num_source_pairs']} source pairs, {results['num_test_images']} test images, "
                     f"{results['wall_time_s']['total']} s\n")
        lines.append("| method | K | mDice % | mIoU % | seeds |")
        lines.append("|---|---|---|---|---|")
        lines += [f"| {' | '.join(str(c) for c in row)} |" for row in method_rows(results)]
    return "\n".join(lines) if lines else "(no results yet)"
