"""Downstream segmenters: MONAI networks chosen by name, each returning one channel of logits.

A network is also *described* as plain data (`network_description`): the MONAI class and its arguments. An exported
segmenter stores that description next to its weights, and loading rebuilds the network from it, so a model file is
data that cannot run code. Only the classes listed here can be rebuilt.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, SegResNet, UNet

from ..errors import choose

# name → (MONAI class, its arguments besides spatial_dims / in_channels / out_channels)
SEGMENTER_ARCHITECTURES: dict[str, tuple[type, dict[str, Any]]] = {
    "unet": (UNet, {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2, "norm": "batch"}),
    "segresnet": (SegResNet, {"init_filters": 16}),
    "attentionunet": (AttentionUnet, {"channels": (16, 32, 64, 128), "strides": (2, 2, 2)}),
    "basicunet": (BasicUNet, {"features": (16, 16, 32, 64, 128, 16)}),
}
MONAI_PREFIX = "monai.networks.nets."


def network_description(architecture: str, in_channels: int, spatial_dims: int = 2) -> dict[str, Any]:
    """The JSON-ready description of a network: {"architecture", "class", "args"}."""
    cls, extra = choose("segmenter architecture", architecture, SEGMENTER_ARCHITECTURES)
    args = {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": 1, **extra}
    return {"architecture": architecture, "class": MONAI_PREFIX + cls.__name__,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}}


def build_from_description(description: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a network from its description. Raises ValueError when it names anything but a listed MONAI class
    with plain-data arguments."""
    if not isinstance(description, dict) or not isinstance(description.get("args"), dict):
        raise ValueError("the network description needs 'architecture', 'class' and 'args'")
    cls, _ = choose("segmenter architecture", str(description.get("architecture")), SEGMENTER_ARCHITECTURES)
    if description.get("class") != MONAI_PREFIX + cls.__name__:
        raise ValueError(f"network class {description.get('class')!r} does not match architecture "
                         f"{description['architecture']!r} ({MONAI_PREFIX + cls.__name__})")
    args = {}
    for key, value in description["args"].items():
        if not isinstance(value, (int, float, str, bool, list)) or (
                isinstance(value, list) and not all(isinstance(v, (int, float)) for v in value)):
            raise ValueError(f"network argument {key!r} is not plain data")
        args[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**args)
    except TypeError as error:
        raise ValueError(f"{cls.__name__} does not take these arguments ({error})") from error


def build_segmenter(architecture: str, in_channels: int, spatial_dims: int = 2) -> torch.nn.Module:
    """(B, C, H, W) in [−1, 1] → (B, 1, H, W) logits; H and W divisible by 16."""
    return build_from_description(network_description(architecture, in_channels, spatial_dims))
