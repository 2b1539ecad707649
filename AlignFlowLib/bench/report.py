"""Benchmark tables: the HTML report beside results.json, and the README tables made from all results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import pictures, svg_curve, table, write_report
from .methods import meets_target

METHOD_LABELS = {
    "source_only": "source only",
    "strong_augmentation": "source, strong colour augmentation (stage-2 judge recipe)",
    "classic_augmentation": "source + classic augmentation copies",
    "histogram_matching": "source + histogram matching to refs",
    "fda": "source + FDA to refs",
    "stage1_synthetic": "source + stage-1 synthetic (no alignment)",
    "alignflow": "source + AlignFlow synthetic",
    "alignflow_real_masks": "ablation: AlignFlow with real source masks",
}

TARGET_LABELS = {
    "mdice_gain_over_source_only": "AlignFlow − source only, mDice points (target ≥ 4.0)",
    "miou_gain_over_source_only": "AlignFlow − source only, mIoU points (target ≥ 5.6)",
    "mdice_gain_over_best_non_generative": "AlignFlow − best non-generative, mDice points (target ≥ 1.5)",
    "kid_ratio_aligned_to_stage1": "KID-EL0 aligned / stage-1 (target ≤ 0.5)",
}


def _k_order(item: tuple[str, Any]) -> int:
    return int(item[0][1:])


def method_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per method and K: mDice and mIoU in %, mean over reference seeds ± std over all segmenters."""
    rows = []
    for method, label in METHOD_LABELS.items():
        if method not in results["methods"]:
            continue
        for k, scores in sorted(results["methods"][method]["by_k"].items(), key=_k_order):
            rows.append([label, k, f"{100 * scores['mdice_mean']:.1f} ± {100 * scores['mdice_std']:.1f}",
                         f"{100 * scores['miou_mean']:.1f} ± {100 * scores['miou_std']:.1f}",
                         scores["num_seeds"], scores.get("num_runs", scores["num_seeds"])])
    return rows


def target_rows(results: dict[str, Any]) -> list[list[Any]]:
    """The benchmark targets: measured value and whether it is met, per K."""
    checks = results.get("targets", {})
    rows = []
    for k, entry in sorted(((k, v) for k, v in checks.items() if k.startswith("K")), key=_k_order):
        for name, label in TARGET_LABELS.items():
            if name in entry:
                met = meets_target(name, entry[name], checks["targets"][name])
                rows.append([k, label, f"{entry[name]:.2f}", "met" if met else "missed"])
    if "k5_minus_k10_abs" in checks:
        rows.append(["K5 vs K10", "AlignFlow K5 vs K10, absolute mDice difference in points (target ≤ 1.0)",
                     f"{checks['k5_minus_k10_abs']:.2f}", "met" if checks["met"]["k5_minus_k10_abs"] else "missed"])
    return rows


def generator_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for set_name, metrics in results["generator"].items():
        for which in ("stage1", "aligned"):
            m = metrics[which]
            rows.append([set_name, which, m["fid_el0"], m["kid_el0"], m["mmd_el0"], m["mask_consistency_dice"]])
    return rows


def _example_sections(results: dict[str, Any], examples: dict[str, dict]) -> list[tuple[str, str]]:
    """Per reference set: the references, stage-1 and aligned samples from the same masks and noise, and the
    held-out-reference MMD² during alignment (the early-stopping criterion)."""
    sections = []
    for set_name, pics in examples.items():
        align = results.get("align", {}).get(set_name, {})
        curve = svg_curve(align.get("eval_step", []), align.get("heldout_mmd", []),
                          f"{set_name}: held-out-reference MMD² during alignment")
        sections.append((f"{set_name}: references (images only), stage-1 and aligned samples",
                         "<p>references</p>" + pictures(pics["references"]) +
                         "<p>stage-1 generator</p>" + pictures(pics["stage1"], pics["masks"]) +
                         "<p>aligned generator (same masks and noise)</p>" + pictures(pics["aligned"], pics["masks"]) +
                         curve))
    return sections


def write_bench_report(path: Path, results: dict[str, Any], source, test,
                       examples: dict[str, dict] | None = None) -> Path:
    overrides = ", ".join(results.get("overrides", [])) or "none"
    sections = [
        ("Setup", f"<p>preset <b>{results['preset']}</b> ({results['description']}), device {results['device']}, "
                  f"commit {results['commit'][:12]}, {results['num_source_pairs']} source pairs, "
                  f"{results['num_test_images']} target test images, {results['num_synthetic']} synthetic pairs "
                  f"per method, {results.get('segmenter_seeds', 1)} segmenter seed(s), overrides: {overrides}, "
                  f"wall time {results['wall_time_s']['total']} s.</p>"),
        ("Target-domain segmentation (target.test)",
         table(method_rows(results), ["method", "K", "mDice %", "mIoU %", "reference seeds", "segmenters"])),
        ("Targets", table(target_rows(results), ["K", "check", "value", "verdict"])),
        ("Generator vs target test images (EfficientNet-Lite0 features; not comparable to Inception FID)",
         table(generator_rows(results), ["references", "generator", "FID-EL0", "KID-EL0", "MMD²-EL0",
                                         "mask consistency Dice"])),
        *_example_sections(results, examples or {}),
        ("Wall time per stage (s)", table(sorted(results["wall_time_s"].items()), ["stage", "seconds"])),
        ("Source pairs", pictures(source.images, source.masks)),
        ("Target test images", pictures(test.images, test.masks)),
    ]
    return write_report(path, f"AlignFlow benchmark: {results['benchmark']}", sections)


def _results_files(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(Path(results_dir).glob("*/results.json"))]


def readme_table(results_dir: Path) -> str:
    """Markdown tables from every full benchmark `*/results.json` under `results_dir`, naming device and preset."""
    lines = []
    for path, results in _results_files(results_dir):
        if results.get("overrides") or results.get("stage1_reused_from"):
            continue  # an ablation: see ablation_table
        lines.append(f"\n**{path.parent.name}** — preset `{results['preset']}`, device {results['device']}, "
                     f"{results['num_source_pairs']} source pairs, {results['num_test_images']} test images, "
                     f"{results.get('segmenter_seeds', 1)} segmenter seed(s) per method, "
                     f"{results['wall_time_s']['total']} s\n")
        lines.append("| method | K | mDice % | mIoU % | reference seeds | segmenters |")
        lines.append("|---|---|---|---|---|---|")
        lines += [f"| {' | '.join(str(c) for c in row)} |" for row in method_rows(results)]
        lines += ["", "| references | generator | FID-EL0 | KID-EL0 | MMD²-EL0 | mask consistency Dice |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c:.1f} | {d:.3f} | {e:.3f} | {f:.3f} |" for a, b, c, d, e, f in
                  generator_rows(results)]
        stages = ", ".join(f"{name} {seconds:g}" for name, seconds in results["wall_time_s"].items())
        lines += ["", f"Wall time per stage (s): {stages}."]
        targets = target_rows(results)
        if targets:
            lines += ["", "| K | check | value | verdict |", "|---|---|---|---|"]
            lines += [f"| {' | '.join(str(c) for c in row)} |" for row in targets]
    return "\n".join(lines) if lines else "(no results yet)"


def ablation_table(results_dir: Path) -> str:
    """One Markdown row per ablation run (a results file with overrides or reused stage 1): what changed, the
    reference-only criterion (best held-out-reference MMD²), generator metrics and the AlignFlow score."""
    lines = ["| run | overrides | K | best held-out-ref MMD² | KID-EL0 stage-1 → aligned | mask consistency | "
             "AlignFlow mDice % | AlignFlow mIoU % |", "|---|---|---|---|---|---|---|---|"]
    for path, results in _results_files(results_dir):
        if not (results.get("overrides") or results.get("stage1_reused_from")):
            continue
        for set_name, generator in results["generator"].items():
            k = set_name.split("_")[0]
            heldout = results.get("align", {}).get(set_name, {}).get("heldout_mmd") or [float("nan")]
            scores = results["methods"].get("alignflow", {}).get("by_k", {}).get(k)
            dice = f"{100 * scores['mdice_mean']:.1f} ± {100 * scores['mdice_std']:.1f}" if scores else "–"
            iou = f"{100 * scores['miou_mean']:.1f} ± {100 * scores['miou_std']:.1f}" if scores else "–"
            lines.append(f"| {path.parent.name} | {', '.join(results.get('overrides', [])) or 'none'} | {set_name} "
                         f"| {min(heldout):.3f} | {generator['stage1']['kid_el0']:.2f} → "
                         f"{generator['aligned']['kid_el0']:.2f} | {generator['stage1']['mask_consistency_dice']:.3f}"
                         f" → {generator['aligned']['mask_consistency_dice']:.3f} | {dice} | {iou} |")
    return "\n".join(lines) if len(lines) > 2 else "(no ablations yet)"


README_BEGIN, README_END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def readme_section(results_dir: Path) -> str:
    """What goes between the README's bench-results markers: the benchmark tables, then the ablations."""
    return (f"{README_BEGIN}\n<!-- generated by `python bench/update_readme.py` from bench/results/*/results.json;"
            f" do not edit by hand -->\n{readme_table(results_dir)}\n\n**Ablations** (stage 2 and segmenter "
            f"settings, one change each):\n\n{ablation_table(results_dir)}\n{README_END}")


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Rewrite the README's generated results section in place; True if it changed."""
    text = Path(readme).read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    updated = text[:start] + readme_section(results_dir) + text[end:]
    if updated != text:
        Path(readme).write_text(updated)
    return updated != text
