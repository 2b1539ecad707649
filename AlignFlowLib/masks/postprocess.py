"""Turn raw mask-generator output into plausible, novel binary masks (DESIGN.md §2, mask generator).

Threshold at 0, remove islands below a minimum area, fill holes, then reject empty masks and masks that nearly
duplicate a training mask (IoU above a threshold), so the generator adds diversity rather than copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage


def clean_mask(mask: np.ndarray, min_area_px: int, fill_holes: bool = True) -> np.ndarray:
    """(H, W) bool → (H, W) bool without islands smaller than `min_area_px` and, optionally, without holes."""
    labels, count = ndimage.label(mask)
    if count:
        areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        keep = np.concatenate([[False], areas >= min_area_px])
        mask = keep[labels]
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask.astype(bool)


def pairwise_iou(masks_a: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    """IoU of every mask in a (N, 1, H, W) with every mask in b (M, 1, H, W) → (N, M); both empty counts as 1."""
    a = masks_a.flatten(1).float()
    b = masks_b.flatten(1).float()
    intersection = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


@dataclass
class MaskFilterResult:
    masks: torch.Tensor           # (M, 1, H, W) accepted masks in {0, 1}
    kept_indices: list[int]       # which raw samples were accepted
    nearest_train_iou: list[float]  # for each accepted mask, IoU with its nearest training mask (diversity)
    rejected_empty: int
    rejected_duplicate: int


def postprocess_masks(raw: torch.Tensor, train_masks: torch.Tensor, min_area_fraction: float = 0.002,
                      fill_holes: bool = True, max_train_iou: float = 0.9) -> MaskFilterResult:
    """Clean raw generator output (B, 1, H, W) in ~[−1, 1] and filter it against training masks (N, 1, H, W)."""
    height, width = raw.shape[-2:]
    min_area_px = max(1, int(round(min_area_fraction * height * width)))
    cleaned = [clean_mask(m[0].cpu().numpy() > 0, min_area_px, fill_holes) for m in raw]
    cleaned_t = torch.from_numpy(np.stack(cleaned)[:, None].astype(np.float32))
    nearest = pairwise_iou(cleaned_t, train_masks.cpu()).max(dim=1).values
    kept, ious, empty, duplicate = [], [], 0, 0
    for index, mask in enumerate(cleaned):
        if not mask.any():
            empty += 1
        elif nearest[index] > max_train_iou:
            duplicate += 1
        else:
            kept.append(index)
            ious.append(float(nearest[index]))
    masks = cleaned_t[kept] if kept else cleaned_t[:0]
    return MaskFilterResult(masks, kept, ious, empty, duplicate)
