"""Random geometric views for the reward: the MMD compares crops of generated images with crops of the references.

Why: with K = 5 references (20 with flips) the reward can be lowered by matching those few feature vectors through
patterns the extractor responds to but a person does not see (the aligned images of version 2 gain bright blobs and
streaks while a network-free distance to the references rises; README, "In short"). Scoring random crops of both
sides at every step (DiffAugment, Zhao et al. 2020, applied to both distributions for the same reason) turns each
reference into a distribution of views and asks the generator to match appearance that survives a change of framing.
Only geometry changes (crop position, crop size, flips): colour is what alignment is meant to match, so it is never
altered.

Measured (`align.reward_views`, off by default; bench/reward-views-cpu.sh and step 9 of bench/reverse-pair-cpu.sh, CPU
preset): alignment then moves the pairs less in the reward's features, and the segmenter gained on neither polyp pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_AREA = 0.6   # a crop keeps 60–100 % of the image's area


def random_view_transforms(count: int, generator: torch.Generator, min_area: float = MIN_AREA) -> torch.Tensor:
    """(count, 2, 3) affine matrices for `F.affine_grid`: a square crop of a random size in [min_area, 1] of the
    area at a random position inside the image, with independent random horizontal and vertical flips.

    Drawn on the CPU from `generator`, so every rank of a distributed run draws the same global batch of views."""
    if not 0 < min_area <= 1:
        raise ValueError(f"min_area must be in (0, 1], got {min_area}")
    side = torch.empty(count).uniform_(min_area ** 0.5, 1.0, generator=generator)      # crop side / image side
    # the crop's centre, in the grid's [-1, 1] coordinates, stays far enough from the edge to keep it inside
    centre = (torch.rand(count, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
    flips = torch.where(torch.rand(count, 2, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = side * flips[:, 0]
    theta[:, 1, 1] = side * flips[:, 1]
    theta[:, :, 2] = centre
    return theta


def apply_views(images: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H, W) float32: each image resampled (bilinear) through its affine crop; differentiable
    in the images. Crops lie inside the image; only the outermost samples, within half a pixel of its edge, take the
    edge pixel's value. (On CUDA the backward pass of `grid_sample` is not deterministic.)"""
    if images.ndim != 4 or transforms.shape != (len(images), 2, 3):
        raise ValueError(f"expected images (B, C, H, W) and transforms (B, 2, 3), got {tuple(images.shape)} and "
                         f"{tuple(transforms.shape)}")
    theta = transforms.to(device=images.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
