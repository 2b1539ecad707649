"""Sampling from the generators with one seed per sample, so a synthetic set can be regrown or extended exactly
(unless a judge filters it: then each pair is still its seed's, but which seeds are kept depends on the count).

Mask k is the k-th accepted sample of the mask generator's seed stream; image k is drawn from noise seeded by
`seed + k` whatever the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .config import MaskGeneratorConfig, SamplerConfig
from .device import autocast, compiled
from .masks.postprocess import postprocess_masks
from .models.velocity import VelocityUNet, guided_velocity
from .segmenter.metrics import mask_dice
from .flow.path import interpolate
from .flow.sampler import sample_ode

IMAGE_STREAM, MASK_STREAM = 0, 1_000_003  # offsets keep image and mask noise independent for the same seed


def seeded_noise(seeds: list[int], shape: tuple[int, ...], stream: int = IMAGE_STREAM) -> torch.Tensor:
    """(len(seeds), *shape) standard normal noise, row k drawn from its own generator seeded by seeds[k]."""
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed) + stream)
        rows.append(torch.randn(shape, generator=generator))
    return torch.stack(rows)


def generate_images(model: VelocityUNet, masks: torch.Tensor, seeds: list[int], sampler: SamplerConfig,
                    device: torch.device, batch_size: int = 16, compile_model: bool = True,
                    init_images: torch.Tensor | None = None, start_time: float = 0.0) -> torch.Tensor:
    """Images (N, C, H, W) in [−1, 1] for conditioning masks (N, 1, H, W), image k from noise seed seeds[k].
    `compile_model=False` keeps a model that is still being trained out of `--compile` (alignment's evaluation).
    With `init_images` (N, C, H, W) and `start_time` t0 > 0, image k is translated instead: the path starts at
    (1 − t0)·noise + t0·init_images[k], the point the flow-matching path of that image passes at t0."""
    shape = (model.data_channels, *masks.shape[-2:])
    if start_time > 0 and (init_images is None or init_images.shape != (len(masks), *shape)):
        raise ValueError(f"translation (start_time {start_time}) needs one {tuple(shape)} start image per mask")
    out = []
    model.eval()
    net = compiled(model) if compile_model else model
    for start in range(0, len(masks), batch_size):
        mask = masks[start:start + batch_size].to(device)
        x0 = seeded_noise(seeds[start:start + batch_size], shape).to(device)
        if start_time > 0:  # the point of the training path from this noise to the start image, at t0
            t0 = torch.full((len(x0),), start_time, device=device)
            x0 = interpolate(x0, init_images[start:start + batch_size].to(device), t0).x_t
        with autocast(device):
            images = sample_ode(guided_velocity(net, mask, sampler.guidance_scale), x0, sampler.method,
                                sampler.num_steps, start_time=start_time)
        out.append(images.float().clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.empty(0, *shape)


@dataclass
class JudgeSelection:
    kept: list[int]                        # indices into the candidates, ascending (seed order)
    dice: torch.Tensor                     # (candidates,) the judge's Dice against each conditioning mask


def select_by_judge(judge: Any, images: torch.Tensor, masks: torch.Tensor, keep: int) -> JudgeSelection:
    """The `keep` candidate pairs whose conditioning mask a frozen segmenter (`predict_probs`) finds best, by Dice;
    ties go to the earlier candidate, so the choice is reproducible."""
    dice = mask_dice(judge, images, masks)
    order = sorted(range(len(dice)), key=lambda k: (-float(dice[k]), k))
    return JudgeSelection(sorted(order[:keep]), dice.float())


@dataclass
class GeneratedMasks:
    masks: torch.Tensor                    # (N, 1, H, W) in {0, 1}
    seeds: list[int]                       # the mask-stream seed of each accepted mask
    nearest_train_iou: list[float]         # diversity: IoU with the nearest training mask
    attempts: int = 0
    rejected_empty: int = 0
    rejected_duplicate: int = 0
    stats: dict = field(default_factory=dict)


def generate_masks(model: VelocityUNet, num: int, seed: int, train_masks: torch.Tensor, config: MaskGeneratorConfig,
                   device: torch.device, batch_size: int = 32, max_attempts_factor: int = 20) -> GeneratedMasks:
    """`num` post-processed, non-duplicate masks from the mask generator, seeds seed, seed+1, … in order."""
    size = train_masks.shape[-1]
    result = GeneratedMasks(torch.empty(0, 1, size, size), [], [])
    next_seed, accepted = seed, []
    model.eval()
    net = compiled(model)
    while len(result.seeds) < num and result.attempts < max_attempts_factor * max(num, 1):
        seeds = list(range(next_seed, next_seed + batch_size))
        next_seed += batch_size
        noise = seeded_noise(seeds, (1, size, size), MASK_STREAM).to(device)
        with autocast(device):
            raw = sample_ode(lambda x, t: net(x, t), noise, "euler", config.sampler_steps)
        filtered = postprocess_masks(raw.float().cpu(), train_masks, config.min_area_fraction, config.fill_holes,
                                     config.max_train_iou)
        for position, index in enumerate(filtered.kept_indices):
            if len(result.seeds) < num:
                accepted.append(filtered.masks[position])
                result.seeds.append(seeds[index])
                result.nearest_train_iou.append(filtered.nearest_train_iou[position])
        result.attempts += batch_size
        result.rejected_empty += filtered.rejected_empty
        result.rejected_duplicate += filtered.rejected_duplicate
    if accepted:
        result.masks = torch.stack(accepted)
    ious = torch.tensor(result.nearest_train_iou) if result.nearest_train_iou else torch.zeros(0)
    area = result.masks.mean(dim=(1, 2, 3)) if len(result.masks) else torch.zeros(0)
    result.stats = {
        "accepted": len(result.seeds), "attempts": result.attempts,
        "rejected_empty": result.rejected_empty, "rejected_duplicate": result.rejected_duplicate,
        "nearest_train_iou_mean": float(ious.mean()) if len(ious) else None,
        "nearest_train_iou_quartiles": [float(q) for q in ious.quantile(torch.tensor([0.25, 0.5, 0.75]))]
        if len(ious) else None,
        "area_fraction_mean": float(area.mean()) if len(area) else None,
        "train_area_fraction_mean": float(train_masks.float().mean()),
    }
    return result
