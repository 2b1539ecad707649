"""What a run folder holds for the page: preview pairs, references, the alignment curve and the report (read-only).

Pure file reading, no MRML: the page's scene code turns these paths into nodes.
"""

from __future__ import annotations

from pathlib import Path

from ..run_folder import RunFolder
from .jobs import GENERATORS, preview_folder
from .security import IMAGE_SUFFIXES


def _stems(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def preview_pairs(run: Path) -> list[dict[str, Path]]:
    """Pair k of every generator, for the names present in all of them: [{"stage1": (image, mask), ...}, ...]."""
    folders = {g: preview_folder(run, g) for g in GENERATORS}
    if not all((f / "manifest.json").is_file() for f in folders.values()):
        return []  # a manifest is written last: without one the preview is still being made
    images = {g: _stems(f / "images") for g, f in folders.items()}
    masks = {g: _stems(f / "masks") for g, f in folders.items()}
    names = sorted(set.intersection(*(set(images[g]) & set(masks[g]) for g in GENERATORS)))
    return [{g: (images[g][name], masks[g][name]) for g in GENERATORS} for name in names]


def reference_images(folder: Path) -> list[Path]:
    """Images of a reference folder, flat or with an images/ subfolder (both are accepted by `alignflow align`)."""
    folder = Path(folder)
    return list(_stems(folder / "images" if (folder / "images").is_dir() else folder).values())


def read_metrics(run: Path) -> dict:
    """The run's metrics.json ({} before it exists; it is written atomically, so never half)."""
    return RunFolder(Path(run)).read_metrics()


def alignment_curve_svg(run: Path) -> str:
    """The held-out reference MMD over alignment steps (what model selection used), as inline SVG; empty before
    alignment has been evaluated."""
    align = read_metrics(run).get("align", {})
    steps, values = align.get("eval_step") or [], align.get("heldout_mmd") or []
    if len(steps) < 2 or len(steps) != len(values):
        return ""
    from ..report import svg_curve  # imported here: the report module brings torch with it

    return svg_curve(steps, values, "held-out reference MMD (lower = closer to the target)")


def report_html(run: Path) -> str:
    path = Path(run) / "report.html"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def metric_rows(run: Path) -> list[dict[str, str]]:
    """Target-test scores when the run had a --test folder: [{"model": ..., "mdice": ..., "miou": ...}]."""
    rows = []
    for name, value in (read_metrics(run).get("target_test") or {}).items():
        if isinstance(value, dict) and "mdice" in value:
            rows.append({"model": name.replace("_", " "), "mdice": f"{value['mdice']:.3f}",
                         "miou": f"{value.get('miou', float('nan')):.3f}"})
    return rows
