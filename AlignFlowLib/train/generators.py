"""Stage 1: the mask-conditioned image generator, and the unconditional mask generator, trained on source pairs."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import DataConfig, ImageGeneratorConfig, MaskGeneratorConfig, to_dict
from ..data.folders import PairSet
from ..device import device_resident, to_device
from ..events import EventCallback, ignore_events
from ..models.velocity import VelocityUNet, drop_masks
from .flow_matching import LossWeightFn, train_flow_model


def random_flip(batch: torch.Tensor, *more: torch.Tensor, generator: torch.Generator):
    """Horizontal flips (the same for every tensor given): cheap, label-preserving data augmentation."""
    flip = to_device(torch.rand(batch.shape[0], generator=generator) < 0.5, batch.device).view(-1, 1, 1, 1)
    out = [torch.where(flip, t.flip(-1), t) for t in (batch, *more)]
    return out if more else out[0]


def mask_to_signed_distance(masks: torch.Tensor, clip_px: float = 8.0) -> torch.Tensor:
    """(B, 1, H, W) {0,1} → signed distance in [−1, 1] (positive inside), clipped at `clip_px` pixels."""
    from scipy import ndimage
    import numpy as np

    out = []
    for mask in masks[:, 0].cpu().numpy().astype(bool):
        inside = ndimage.distance_transform_edt(mask)
        outside = ndimage.distance_transform_edt(~mask)
        out.append(np.clip((inside - outside) / clip_px, -1, 1))
    return torch.from_numpy(np.stack(out)[:, None].astype(np.float32))


def train_image_generator(pairs: PairSet, config: ImageGeneratorConfig, data_config: DataConfig,
                          device: torch.device, checkpoint_path: Path, resume: bool = False,
                          on_event: EventCallback = ignore_events) -> VelocityUNet:
    """v_θ(x_t, t, m) on source pairs, with mask dropout for classifier-free guidance; returns the EMA model."""
    images, masks = device_resident(pairs.images, device), device_resident(pairs.masks, device)

    def batch(generator: torch.Generator):
        index = torch.randint(len(images), (config.batch_size,), generator=generator)
        # Gathered and augmented on the device where the set fits there: on a GPU the host stays ahead.
        x1, mask = to_device(images[index.to(images.device)], device), to_device(masks[index.to(masks.device)], device)
        x1, mask = random_flip(x1, mask, generator=generator)
        return x1, drop_masks(mask, config.mask_dropout, generator)

    meta = {"data_channels": images.shape[1], "condition_channels": 1, "image_size_px": images.shape[-1],
            "data_config": to_dict(data_config), "num_train_pairs": len(pairs)}
    return train_flow_model("image_generator", batch, config, meta, device, checkpoint_path, resume, on_event,
                            stage="image_generator", loss_weight=lesion_loss_weight(masks, config.mask_loss_weight))


def lesion_loss_weight(masks: torch.Tensor, extra: float) -> LossWeightFn | None:
    """Per-pixel weights 1 + extra inside the conditioning mask, 1 elsewhere and on dropped (unconditional) rows,
    divided by their mean over the training masks so the loss keeps about its usual scale (gradient clipping sees
    similar sizes; dropped rows make a batch's mean weight slightly below 1). Why: lesions are a small share of the
    pixels, and the CPU benchmark's small generator drew them with less local contrast than the real source pairs
    have (0.20 against 0.31; bench/pair_diagnostics.py). None when extra is 0 (the plain mean)."""
    if extra <= 0:
        return None
    scale = 1.0 + extra * int(torch.count_nonzero(masks > 0.5)) / masks.numel()

    def weight(condition: torch.Tensor) -> torch.Tensor:
        return (1.0 + extra * (condition > 0.75).float()) / scale  # dropped rows hold 0.5: unweighted

    return weight


def train_mask_generator(pairs: PairSet, config: MaskGeneratorConfig, device: torch.device, checkpoint_path: Path,
                         resume: bool = False, on_event: EventCallback = ignore_events,
                         compile_loop: bool = False) -> VelocityUNet:
    """Unconditional v_ψ(m_t, t) on source masks scaled to [−1, 1] (or their signed distance); returns EMA.

    The loop stays eager under `--compile` unless `compile_loop`: on an H200 its compiled loop ran at 1.64, 0.85, 1.20
    and 0.71 times the eager loop's speed in four runs, and with the compile time counted, three of the four would
    have finished the `gpu` preset's 3000 steps later than eager (README, "`--compile` in the loops")."""
    if config.target == "sdf":
        targets = mask_to_signed_distance(pairs.masks)
    elif config.target == "binary":
        targets = pairs.masks * 2 - 1
    else:
        raise ValueError(f"unknown mask target {config.target!r}; choose binary or sdf")
    targets = device_resident(targets, device)

    def batch(generator: torch.Generator):
        index = torch.randint(len(targets), (config.batch_size,), generator=generator)
        rotations = int(torch.randint(4, (1,), generator=generator))
        m1 = to_device(targets[index.to(targets.device)], device)
        m1 = random_flip(m1, generator=generator).rot90(rotations, dims=(-2, -1))
        return m1.contiguous(), None

    meta = {"data_channels": 1, "condition_channels": 0, "image_size_px": targets.shape[-1],
            "num_train_masks": len(pairs)}
    return train_flow_model("mask_generator", batch, config, meta, device, checkpoint_path, resume, on_event,
                            stage="mask_generator", compile_loop=compile_loop)
