"""Benchmark tables: the HTML report beside results.json, and the README tables made from all results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import pictures, svg_curve, table, write_report

METHOD_LABELS = {
    "source_only": "source only",
    "classic_augmentation": "source + classic augmentation copies",
    "histogram_matching": "source + histogram matching to refs",
    "fda": "source + FDA to refs",
    "stage1_synthetic": "source + stage-1 synthetic (no alignment)",
    "alignflow": "source + AlignFlow synthetic",
    "alignflow_real_masks": "ablation: AlignFlow with real source masks",
}
PAIRED_LABELS = {"stage1_synthetic": "AlignFlow − stage-1 synthetic (the alignment control)",
                 "best_non_generative": "AlignFlow − best non-generative",
                 "source_only": "AlignFlow − source only"}


def _k_order(item: tuple[str, Any]) -> int:
    return int(item[0][1:])


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def method_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per method and K: mDice and mIoU in %, mean over reference sets × segmenter seeds ± their std."""
    rows = []
    for method, label in METHOD_LABELS.items():
        for k, s in sorted(results["methods"].get(method, {}).get("by_k", {}).items(), key=_k_order):
            rows.append([label, k, f"{100 * s['mdice_mean']:.1f} ± {100 * s['mdice_std']:.1f}",
                         f"{100 * s['miou_mean']:.1f} ± {100 * s['miou_std']:.1f}", s["num_reference_sets"],
                         s["num_runs"]])
    return rows


def paired_rows(results: dict[str, Any]) -> list[list[Any]]:
    """AlignFlow − other method per K: mean paired mDice difference and its 95 % cluster-bootstrap interval."""
    rows = []
    for k, scores in sorted(results["methods"].get("alignflow", {}).get("by_k", {}).items(), key=_k_order):
        for name, label in PAIRED_LABELS.items():
            d = scores.get("paired", {}).get(name)
            if d is None:
                continue
            which = f" ({METHOD_LABELS[d['method']]})" if "method" in d else ""
            rows.append([k, label + which, _points(d["mean_diff"]),
                         f"[{_points(d['ci_low'])}, {_points(d['ci_high'])}]",
                         f"{d['num_reference_sets']} × {d['num_seeds']} × {d['num_images']} ({d['num_clusters']})"])
    return rows


def win_rows(results: dict[str, Any]) -> list[list[Any]]:
    win = results.get("win", {})
    rows = []
    for k in win.get("rule", {}).get("ks", []):
        for other, check in win.get(k, {}).items():
            if other == "kid_ratio_aligned_to_stage1":
                rows.append([k, "KID-EL0 aligned / stage-1 ≤ 0.5 (DESIGN.md)", f"{check['value']:.2f}",
                             "met" if check["met"] else "missed"])
            elif "mean_diff" in check:
                name = f"{other} ({check['method']})" if "method" in check else other
                rows.append([k, f"AlignFlow − {name} ≥ {_points(check['min_gain'])} points, "
                                f"CI low > 0", f"{_points(check['mean_diff'])} (low {_points(check['ci_low'])})",
                             "met" if check["met"] else "missed"])
    if "k5_minus_k10_abs" in win:
        gap = win["k5_minus_k10_abs"]
        rows.append(["K5 vs K10", f"abs(AlignFlow K5 − K10) ≤ {100 * gap['max']:.1f} points", f"{100 * gap['value']:.1f}",
                     "met" if gap["met"] else "missed"])
    return rows


GENERATOR_HEADER = ["references", "generator", "FID-EL0", "KID-EL0", "MMD²-EL0", "mask consistency Dice",
                    "patch SWD × 1000 (finest … low-pass)"]


def generator_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per reference set and generator; runs from before the patch SWD was measured show "–" there."""
    rows = []
    for set_name, metrics in results["generator"].items():
        for which in ("stage1", "aligned"):
            m = metrics[which]
            swd = " / ".join(f"{d:.1f}" for d in m["patch_swd"]) if "patch_swd" in m else "–"
            rows.append([set_name, which, m["fid_el0"], m["kid_el0"], m["mmd_el0"], m["mask_consistency_dice"], swd])
    return rows


def _example_sections(results: dict[str, Any], examples: dict[str, dict]) -> list[tuple[str, str]]:
    """Per reference set: the references, stage-1 and aligned samples from the same masks and noise, and the
    selection criterion during alignment (held-out-reference MMD² unless the run chose another)."""
    sections = []
    for set_name, pics in examples.items():
        align = results.get("align_selection", {}).get(set_name, {})
        criterion = align.get("criterion", "held-out MMD²")  # summaries from before the choice was recorded
        curve = svg_curve(align.get("eval_step", []), align.get("heldout_mmd", []),
                          f"{set_name}: {criterion} during alignment")
        sections.append((f"{set_name}: references (images only), stage-1 and aligned samples",
                         "<p>references</p>" + pictures(pics["references"]) +
                         "<p>stage-1 generator</p>" + pictures(pics["stage1"], pics["masks"]) +
                         "<p>aligned generator (same masks and noise)</p>" + pictures(pics["aligned"], pics["masks"]) +
                         curve))
    return sections


def _changes(results: dict[str, Any]) -> list[str]:
    """What the run changed against its preset and the protocol: `--set` overrides and a different seed count."""
    from .protocol import default_segmenter_seeds  # protocol imports this module

    default_seeds = default_segmenter_seeds(results.get("preset", ""))
    seeds = results.get("segmenter_seeds", default_seeds)
    return list(results.get("overrides", [])) + ([f"--segmenter-seeds {seeds}"] if seeds != default_seeds else [])


def _setup_text(results: dict[str, Any]) -> str:
    overrides = ", ".join(_changes(results)) or "none"
    return (f"protocol version {results.get('protocol_version', 1)}, "  # results from before versions were stored: 1
            f"preset `{results['preset']}` ({results['description']}), device {results['device']}"
            f"{', CPU bf16 autocast' if results.get('cpu_bf16') else ''}"
            f"{', torch.compile' if results.get('compiled') else ''}, commit {results['commit'][:12]}, "
            f"{results['num_source_pairs']} source pairs, {results['num_test_images']} target test images in "
            f"{results['num_test_clusters']} clusters, {results['num_synthetic']} synthetic pairs per method, "
            f"{results['segmenter_seeds']} segmenter seeds, reference sets {', '.join(results['reference_sets'])}, "
            f"overrides: {overrides}, wall time {results['wall_time_s']['total']} s")


def _recipe_text(check: dict[str, Any]) -> str:
    return (f"Segmenter recipe chosen on source validation: preferred ({', '.join(check['preferred'])}) "
            f"{100 * check['source_val_mdice_preferred']:.1f} vs alternative ({', '.join(check['alternative'])}) "
            f"{100 * check['source_val_mdice_alternative']:.1f} mDice; every method used the **{check['chosen']}** "
            f"recipe")


def write_bench_report(path: Path, results: dict[str, Any], source, test,
                       examples: dict[str, dict] | None = None) -> Path:
    check = results.get("recipe_check", {})
    recipe = f"<p>{_recipe_text(check)}</p>" if "passed" in check else ""
    sections = [
        ("Setup", f"<p>{_setup_text(results)}.</p>{recipe}"),
        ("Target-domain segmentation (test set)",
         table(method_rows(results), ["method", "K", "mDice %", "mIoU %", "reference sets", "segmenters"])),
        ("Paired differences (mDice points, 95 % cluster bootstrap)",
         table(paired_rows(results), ["K", "comparison", "mean", "95 % CI", "sets × seeds × images (clusters)"])),
        ("Protocol win rule", table(win_rows(results), ["K", "check", "value", "verdict"])),
        ("Generator vs target test images (EfficientNet-Lite0 features, not comparable to Inception FID; the patch "
         "SWD uses no network)",
         table(generator_rows(results), GENERATOR_HEADER)),
        *_example_sections(results, examples or {}),
        ("Wall time per stage (s)", table(sorted(results["wall_time_s"].items()), ["stage", "seconds"])),
        ("Source pairs", pictures(source.images, source.masks)),
        ("Target test images", pictures(test.images, test.masks)),
    ]
    return write_report(path, f"AlignFlow benchmark: {results['benchmark']}", sections)


def _results_files(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(Path(results_dir).glob("*/results.json"))]


def _markdown(rows: list[list[Any]], header: list[str]) -> list[str]:
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + \
        [f"| {' | '.join(str(c) for c in row)} |" for row in rows]


def _is_ablation(results: dict[str, Any]) -> bool:
    return bool(_changes(results) or results.get("stage1_reused_from"))


def readme_table(results_dir: Path) -> str:
    """Markdown tables from every full protocol run `*/results.json` under `results_dir`, naming device and preset."""
    lines = []
    for path, results in _results_files(results_dir):
        if _is_ablation(results):
            continue
        lines.append(f"\n**{path.parent.name}**: {_setup_text(results)}.\n")
        if "passed" in results.get("recipe_check", {}):
            lines.append(_recipe_text(results["recipe_check"]) + ".\n")
        lines += _markdown(method_rows(results), ["method", "K", "mDice %", "mIoU %", "reference sets", "segmenters"])
        lines += [""] + _markdown(paired_rows(results), ["K", "paired comparison", "mean mDice points",
                                                           "95 % CI", "sets × seeds × images (clusters)"])
        lines += [""] + _markdown(win_rows(results), ["K", "protocol win rule", "value", "verdict"])
        lines += [""] + _markdown([[a, b, f"{c:.1f}", f"{d:.3f}", f"{e:.3f}", f"{f:.3f}", g] for a, b, c, d, e, f, g in
                                   generator_rows(results)], GENERATOR_HEADER)
        stages = ", ".join(f"{name} {seconds:g}" for name, seconds in results["wall_time_s"].items())
        lines += ["", f"Wall time per stage (s): {stages}."]
    return "\n".join(lines) if lines else "(no protocol results yet)"


def _data_label(results: dict[str, Any]) -> str:
    """The domain pair, and the folder it was read from where the run recorded one: a copy of the polyp layout with
    other images (such as a controlled shift) names the same pair, and `bench pairs` names only the leaf folders."""
    pair = results["benchmark"].split(": ", 1)[-1]
    folders = results.get("data", {})
    if folders.get("root"):
        return f"{pair} ({Path(folders['root']).name})"
    parents = {Path(folders[key]).parent.name for key in ("source", "test") if folders.get(key)}
    return f"{pair} ({parents.pop()})" if len(parents) == 1 else pair


def ablation_table(results_dir: Path) -> str:
    """One Markdown row per ablation run and K: its data, what changed, and AlignFlow − stage-1 synthetic (the
    control)."""
    rows = []
    for path, results in _results_files(results_dir):
        if not _is_ablation(results):
            continue
        for k, scores in sorted(results["methods"].get("alignflow", {}).get("by_k", {}).items(), key=_k_order):
            d = scores.get("paired", {}).get("stage1_synthetic")
            control = f"{_points(d['mean_diff'])} [{_points(d['ci_low'])}, {_points(d['ci_high'])}]" if d else "–"
            rows.append([path.parent.name, _data_label(results), ", ".join(_changes(results)) or "none", k,
                         f"{100 * scores['mdice_mean']:.1f} ± {100 * scores['mdice_std']:.1f}", control])
    if not rows:
        return "(no ablations yet)"
    return "\n".join(_markdown(rows, ["run", "data", "overrides", "K", "AlignFlow mDice %",
                                      "AlignFlow − stage-1 synthetic (95 % CI)"]))


README_BEGIN, README_END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def readme_section(results_dir: Path) -> str:
    """What goes between the README's bench-results markers: the protocol tables, then the ablations."""
    return (f"{README_BEGIN}\n<!-- generated by `python bench/update_readme.py` from bench/results/*/results.json;"
            f" do not edit by hand -->\n{readme_table(results_dir)}\n\n**Ablations** (one change each, same "
            f"protocol):\n\n{ablation_table(results_dir)}\n{README_END}")


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Rewrite the README's generated results section in place; True if it changed."""
    text = Path(readme).read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    updated = text[:start] + readme_section(results_dir) + text[end:]
    if updated != text:
        Path(readme).write_text(updated)
    return updated != text
