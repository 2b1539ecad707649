"""Downstream segmenters: MONAI networks chosen by name, each returning one channel of logits."""

from __future__ import annotations

from typing import Callable

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, SegResNet, UNet

from ..errors import choose


def _unet(in_channels: int, spatial_dims: int) -> torch.nn.Module:
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, channels=(16, 32, 64, 128),
                strides=(2, 2, 2), num_res_units=2, norm="batch")


def _segresnet(in_channels: int, spatial_dims: int) -> torch.nn.Module:
    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, init_filters=16)


def _attention_unet(in_channels: int, spatial_dims: int) -> torch.nn.Module:
    return AttentionUnet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1,
                         channels=(16, 32, 64, 128), strides=(2, 2, 2))


def _basic_unet(in_channels: int, spatial_dims: int) -> torch.nn.Module:
    return BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1,
                     features=(16, 16, 32, 64, 128, 16))


SEGMENTER_ARCHITECTURES: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "unet": _unet, "segresnet": _segresnet, "attentionunet": _attention_unet, "basicunet": _basic_unet,
}


def build_segmenter(architecture: str, in_channels: int, spatial_dims: int = 2) -> torch.nn.Module:
    """(B, C, H, W) in [−1, 1] → (B, 1, H, W) logits; H and W divisible by 16."""
    return choose("segmenter architecture", architecture, SEGMENTER_ARCHITECTURES)(in_channels, spatial_dims)
