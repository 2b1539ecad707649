"""Velocity networks: MONAI's `DiffusionModelUNet`, optionally conditioned on a mask by channel concatenation.

The image generator sees [x_t, m] with the mask m scaled to {−1, +1}; a dropped mask is all zeros, a value no real
mask takes, so the same network gives the unconditional velocity needed for classifier-free guidance (Ho & Salimans
2022). The mask generator is the same network with no conditioning channel.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet

from ..device import to_device

TIME_SCALE = 1000.0  # t ∈ [0, 1] is scaled so MONAI's sinusoidal time embedding sees its usual range


class VelocityUNet(torch.nn.Module):
    """v_θ(x_t, t, m): (B, C, H, W) velocity for (B, C, H, W) x_t, (B,) t, optional (B, 1, H, W) mask in {0, 1}."""

    def __init__(self, data_channels: int, condition_channels: int, channels: tuple[int, ...],
                 attention_levels: tuple[bool, ...], num_res_blocks: int, num_head_channels: int,
                 norm_num_groups: int, spatial_dims: int = 2):
        super().__init__()
        self.data_channels, self.condition_channels = data_channels, condition_channels
        self.unet = DiffusionModelUNet(
            spatial_dims=spatial_dims,
            in_channels=data_channels + condition_channels,
            out_channels=data_channels,
            channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            num_res_blocks=num_res_blocks,
            num_head_channels=num_head_channels,
            norm_num_groups=norm_num_groups,
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.condition_channels:
            # Dropped or absent mask → zeros ("no condition"); a given mask → {−1, +1}.
            cond = torch.zeros_like(x_t[:, :1]) if mask is None else mask.to(x_t.dtype) * 2 - 1
            x_t = torch.cat([x_t, cond], dim=1)  # (B, C + 1, H, W)
        return self.unet(x_t, timesteps=t * TIME_SCALE)  # (B, C, H, W)


def build_velocity_unet(data_channels: int, condition_channels: int, config: Any) -> VelocityUNet:
    """Build from an `ImageGeneratorConfig` or `MaskGeneratorConfig` (fields: channels, attention_levels, ...)."""
    return VelocityUNet(
        data_channels=data_channels,
        condition_channels=condition_channels,
        channels=tuple(config.channels),
        attention_levels=tuple(config.attention_levels),
        num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels,
        norm_num_groups=config.norm_num_groups,
    )


def drop_masks(mask: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask dropout for classifier-free guidance: dropped rows become NaN-free zeros after the {−1,+1} scaling.

    Returns the mask with dropped rows set to 0.5, which `VelocityUNet` maps to 0 ("no condition").
    """
    if probability <= 0:
        return mask
    keep = torch.rand(mask.shape[0], generator=generator, device="cpu") >= probability
    keep = to_device(keep, mask.device).view(-1, *([1] * (mask.dim() - 1)))  # a blocking copy would wait on the GPU
    return torch.where(keep, mask, torch.full_like(mask, 0.5))


def guided_velocity(model: VelocityUNet, mask: torch.Tensor | None, guidance_scale: float = 1.0):
    """A velocity function (x, t) -> v with classifier-free guidance v_u + s·(v_c − v_u) on the mask."""
    if mask is None or guidance_scale == 1.0:
        return lambda x, t: model(x, t, mask)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([mask, torch.full_like(mask, 0.5)]))
        v_cond, v_uncond = both.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    return velocity
