"""Histogram matching of source images to the few reference images (classic CDF matching, e.g. Gonzalez & Woods).

Each channel of each image is mapped through F_ref⁻¹(F_img(v)), with F_ref the empirical CDF of that channel pooled
over all K references. Letterbox padding (pixels that are exactly −1 in every channel, written by our resize-by-
padding) is left out of both CDFs and stays −1 in the output, so black bars neither skew nor receive the mapping.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

PAD_VALUE = -1.0


def _content(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N, H, W) bool: True where a pixel is not letterbox padding."""
    return ~np.all(images == PAD_VALUE, axis=1)


def _map_channel(values: np.ndarray, ref_sorted: np.ndarray) -> np.ndarray:
    """Map 1-D `values` so that their empirical CDF follows that of `ref_sorted` (ascending)."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    source_cdf = (np.cumsum(counts) - 0.5 * counts) / values.size          # mid-rank quantile of each level
    ref_cdf = (np.arange(ref_sorted.size) + 0.5) / ref_sorted.size
    return np.interp(source_cdf, ref_cdf, ref_sorted)[inverse]


def match_histograms(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram matching of every image to the pooled reference distribution.

    Args:
        images: (N, C, H, W) in [−1, 1].
        references: (K, C, H', W') in [−1, 1], same C (sizes may differ).
    Returns:
        (N, C, H, W) tensor of the images' dtype and device, in [−1, 1]; padding pixels stay −1.
    Raises:
        ValueError: on a channel mismatch or references with no content pixels.
    """
    if images.ndim != 4 or references.ndim != 4 or images.shape[1] != references.shape[1]:
        raise ValueError(f"images {tuple(images.shape)} and references {tuple(references.shape)} must be "
                         "(N, C, H, W) with the same C")
    ref = references.detach().double().cpu().numpy()
    ref_content = _content(ref)
    if not ref_content.any():
        raise ValueError("the references contain only padding")
    src = images.detach().double().cpu().numpy()
    out = src.copy()
    src_content = _content(src)
    for c in range(src.shape[1]):
        ref_sorted = np.sort(ref[:, c][ref_content])
        for i in range(src.shape[0]):
            mask = src_content[i]
            if mask.any():
                out[i, c][mask] = _map_channel(src[i, c][mask], ref_sorted)
    logger.debug("histogram-matched %d images to %d references", len(src), len(ref))
    return torch.from_numpy(np.clip(out, -1.0, 1.0)).to(images.device, images.dtype)
