"""Exponential moving average of weights, parameterised by a half-life in optimiser steps."""

from __future__ import annotations

import copy

import torch


def make_ema(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of `model` to hold the averaged weights; sampling uses it by name."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, halflife_steps: float) -> None:
    """ema ← β·ema + (1 − β)·model with β = 0.5^(1 / half-life): after `halflife_steps` a weight's pull halves."""
    beta = 0.5 ** (1.0 / max(halflife_steps, 1e-8))
    # One fused update on CUDA instead of a kernel launch per parameter (the same arithmetic as lerp_).
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
