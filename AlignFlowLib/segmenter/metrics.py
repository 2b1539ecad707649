"""Segmentation metrics per image (DESIGN.md §2): Dice and IoU at a fixed threshold, averaged over images."""

from __future__ import annotations

from typing import Any

import torch


def dice_iou(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Dice and IoU (N,) float64 for binary (N, 1, H, W) masks.

    Both empty counts as a perfect 1.0 (nothing to find, nothing found); one empty and the other not as 0.0.
    """
    p = pred.bool().flatten(1).double()
    t = truth.bool().flatten(1).double()
    intersection = (p * t).sum(1)
    total = p.sum(1) + t.sum(1)
    union = total - intersection
    dice = torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    return dice, iou


def mask_dice(segmenter: Any, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image Dice (N,) of a frozen segmenter's prediction (`predict_probs` > 0.5) against given masks: how well
    it finds each pair's mask in its image (the judge of synthetic pairs)."""
    dice, _ = dice_iou(segmenter.predict_probs(images) > 0.5, masks > 0.5)
    return dice


def summarize(dice: torch.Tensor, iou: torch.Tensor) -> dict[str, Any]:
    """mDice and mIoU as means over images, plus the per-image lists."""
    return {"mdice": float(dice.mean()) if len(dice) else float("nan"),
            "miou": float(iou.mean()) if len(iou) else float("nan"),
            "dice": [float(v) for v in dice], "iou": [float(v) for v in iou], "num_images": len(dice)}
