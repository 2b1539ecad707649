"""Before/after measurements of alignment: distribution distance to unseen target images and mask fidelity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .config import SamplerConfig
from .models.velocity import VelocityUNet
from .reward.features import FeatureExtractor
from .reward.metrics import generator_metrics, image_features
from .reward.patch_swd import patch_swd, pyramid_levels
from .segmenter.metrics import mask_dice
from .synthesis import generate_images


@dataclass
class GeneratorComparison:
    metrics: dict[str, dict[str, Any]]                     # {"stage1": {...}, "aligned": {...}}
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # the generated images, for the report
    masks: torch.Tensor | None = None


def mask_consistency(segmenter: Any, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean Dice of a frozen segmenter's prediction on generated images against their conditioning masks."""
    return float(mask_dice(segmenter, images, masks).mean())


def compare_generators(generators: dict[str, VelocityUNet], masks: torch.Tensor, target_images: torch.Tensor,
                       extractor: FeatureExtractor, segmenter: Any, sampler: SamplerConfig, device: torch.device,
                       seed: int = 50_000, target_features: torch.Tensor | None = None) -> GeneratorComparison:
    """Generate from each model with the same masks and noise seeds, then measure against held-out target images.

    `target_images` must be images the reward never saw (FID/KID-EL0, MMD on EfficientNet-Lite0 features).
    `patch_swd` (× 1000, finest level first) measures the same gap with no network, so a move that only the reward's
    extractor sees shows as a falling KID-EL0 beside a level patch SWD. The target images' features are extracted
    once per call; `target_features` (`reward.metrics.image_features` of `target_images`) lets a caller that calls
    this repeatedly with the same target images extract them once in all.
    """
    levels, target_pixels = pyramid_levels(min(target_images.shape[-2:])), target_images.float().cpu()
    if target_features is None:
        target_features = image_features(extractor, target_images)
    seeds = list(range(seed, seed + len(masks)))
    result = GeneratorComparison({}, {}, masks)
    for name, model in generators.items():
        images = generate_images(model, masks, seeds, sampler, device)
        metrics = generator_metrics(extractor, images, target_images, target_features=target_features)
        metrics["mask_consistency_dice"] = mask_consistency(segmenter, images, masks)
        result.metrics[name] = {k: float(v) for k, v in metrics.items()}
        distances = patch_swd(images.float().cpu(), target_pixels, levels)
        result.metrics[name]["patch_swd"] = [round(1000 * d, 3) for d in distances]
        result.images[name] = images
    return result
