"""A colour term for the reward: each image's mean and spread of colour over its tissue, compared as distributions.

Why a separate term. Protocol version 2's reward (deep EfficientNet features only) did not carry a colour shift even
where colour was the whole gap (bench/shifted-target-cpu.sh), and the early-layer statistics that did carry it were
lowered on CVC-ClinicDB -> Kvasir-SEG while the tissue colour moved away from the references'
(bench/tissue-style-cpu.sh). These descriptors are the colour itself, read from the pixels synthesis writes, over the
pixels the `dark_pixels` rule calls tissue, so the letterbox and an endoscope's black border do not count. The
alignment reward compares them with their own MMD² (with the rbf kernel, its own median-heuristic bandwidth), so a
weight of 1 puts the colour term on the deep term's footing whatever the features' scales.
"""

from __future__ import annotations

import torch

from .features import TISSUE_FLOOR, dark_pixels


def tissue_colour(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [−1, 1] → (B, 2C): each channel's mean and standard deviation over tissue, as (x + 1) / 2.

    Non-tissue pixels keep a weight of TISSUE_FLOOR (the rule is a hard threshold decided on the image, not
    differentiated), so an image without tissue gets its plain statistics. Differentiable in the tissue pixels."""
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    images = images.float()
    with torch.no_grad():
        weight = (1 - dark_pixels(images).float()).clamp_min(TISSUE_FLOOR).flatten(2)     # (B, 1, HW)
        weight = weight / weight.sum(-1, keepdim=True)
    unit = ((images + 1) / 2).flatten(2)                                                   # (B, C, HW)
    mean = (unit * weight).sum(-1)
    var = ((unit - mean[..., None]).square() * weight).sum(-1)
    return torch.cat([mean, (var + 1e-8).sqrt()], dim=1)
