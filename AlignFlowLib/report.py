"""A self-contained HTML report: pictures embedded as base64 PNG, curves as inline SVG, no external files."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .atomic import atomic_write


def _to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [−1, 1] → (H, W, 3) uint8."""
    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def overlay_outline(image: torch.Tensor, mask: torch.Tensor, colour=(255, 230, 0)) -> np.ndarray:
    """The image with the mask's boundary drawn on it (how the slice views preview a pair)."""
    rgb = _to_rgb_uint8(image).copy()
    inside = mask[0].cpu().numpy() > 0.5
    rgb[inside & ~ndimage.binary_erosion(inside)] = colour
    return rgb


def grid_png(tiles: Sequence[np.ndarray], columns: int = 8, scale: int = 2, pad: int = 2) -> str:
    """Tiles (H, W, 3) uint8 of one size → a base64 PNG grid, upscaled `scale`× (nearest) for small images."""
    if not tiles:
        return ""
    height, width = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        canvas[pad + r * (height + pad):pad + r * (height + pad) + height,
               pad + c * (width + pad):pad + c * (width + pad) + width] = tile
    picture = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pictures(images: torch.Tensor, masks: torch.Tensor | None = None, count: int = 16, columns: int = 8) -> str:
    """An <img> of the first `count` images, with mask outlines if masks are given."""
    tiles = [overlay_outline(images[i], masks[i]) if masks is not None else _to_rgb_uint8(images[i])
             for i in range(min(count, len(images)))]
    return f'<img alt="grid" src="data:image/png;base64,{grid_png(tiles, columns)}">'


def mask_pictures(masks: torch.Tensor, count: int = 16, columns: int = 8) -> str:
    tiles = [np.repeat((masks[i, 0].cpu().numpy() > 0.5).astype(np.uint8)[..., None] * 255, 3, axis=2)
             for i in range(min(count, len(masks)))]
    return f'<img alt="masks" src="data:image/png;base64,{grid_png(tiles, columns)}">'


def svg_curve(xs: Sequence[float], ys: Sequence[float], title: str, width: int = 360, height: int = 160) -> str:
    """A minimal line plot as inline SVG (loss curves), with min/max labels."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None and np.isfinite(y)]
    if len(points) < 2:
        return f"<p>{html.escape(title)}: not enough points</p>"
    x_min, x_max = min(p[0] for p in points), max(p[0] for p in points)
    y_min, y_max = min(p[1] for p in points), max(p[1] for p in points)
    span_x, span_y = (x_max - x_min) or 1.0, (y_max - y_min) or 1.0
    path = " ".join(f"{10 + (x - x_min) / span_x * (width - 20):.1f},{height - 20 - (y - y_min) / span_y * (height - 40):.1f}"
                    for x, y in points)
    return (f'<svg width="{width}" height="{height}" style="border:1px solid #ccc;margin:4px">'
            f'<text x="10" y="14" font-size="12">{html.escape(title)}</text>'
            f'<text x="10" y="{height - 4}" font-size="10">step {x_min:g}–{x_max:g}; '
            f'y {y_min:.3g}–{y_max:.3g}</text>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{path}"/></svg>')


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path: Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write an HTML page of (heading, html) sections atomically."""
    style = ("body{font-family:sans-serif;max-width:1100px;margin:20px auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee}"
             "img{image-rendering:pixelated;max-width:100%}")
    body = "".join(f"<h2>{html.escape(heading)}</h2>{content}" for heading, content in sections)
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))
    return Path(path)
