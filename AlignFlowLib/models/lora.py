"""Low-rank adapters (Hu et al. 2022) for the velocity UNet's convolutions and linear layers.

Stage 2 can fine-tune the full network or only these adapters; `merge_lora` folds them back into plain weights so an
aligned checkpoint is an ordinary generator that loads without knowing about adapters.
"""

from __future__ import annotations

import torch
from torch import nn


class LoRAConv2d(nn.Module):
    """y = conv(x) + (α/r)·up(down(x)): `down` has the base kernel and r outputs, `up` is 1×1 and starts at zero."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = (alpha or rank) / rank
        self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                              base.dilation, groups=1, bias=False)
        self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=5 ** 0.5)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))

    def merged(self) -> nn.Conv2d:
        delta = torch.einsum("or,rikl->oikl", self.up.weight[:, :, 0, 0], self.down.weight) * self.scale
        conv = self.base
        conv.weight.data += delta.to(conv.weight.dtype)
        return conv.requires_grad_(True)


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = (alpha or rank) / rank
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=5 ** 0.5)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))

    def merged(self) -> nn.Linear:
        self.base.weight.data += (self.up.weight @ self.down.weight * self.scale).to(self.base.weight.dtype)
        return self.base.requires_grad_(True)


def apply_lora(model: nn.Module, rank: int) -> nn.Module:
    """Freeze `model` and wrap every grouped-free Conv2d and every Linear in an adapter, in place."""
    model.requires_grad_(False)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d) and child.groups == 1:
            setattr(model, name, LoRAConv2d(child, rank))
        elif isinstance(child, nn.Linear):
            setattr(model, name, LoRALinear(child, rank))
        elif not isinstance(child, (LoRAConv2d, LoRALinear)):
            apply_lora(child, rank)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer, in place; the result has the original module structure."""
    for name, child in list(model.named_children()):
        if isinstance(child, (LoRAConv2d, LoRALinear)):
            setattr(model, name, child.merged())
        else:
            merge_lora(child)
    return model
