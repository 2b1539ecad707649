"""Rectified-flow probability path (DESIGN.md §2): x_t = (1 − t)·x₀ + t·x₁, target velocity x₁ − x₀.

t = 0 is noise x₀ ~ N(0, I) and t = 1 is data x₁, the convention of Liu et al. 2022 / Lipman et al. 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import choose


@dataclass
class PathSample:
    x_t: torch.Tensor     # (B, C, H, W) point on the straight path at time t
    t: torch.Tensor       # (B,) in (0, 1)
    target: torch.Tensor  # (B, C, H, W) velocity x₁ − x₀ the network must predict


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
    """Point and velocity target on the straight line from noise x0 to data x1 at times t (B,)."""
    t_b = t.view(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)
    return PathSample(x_t=(1 - t_b) * x0 + t_b * x1, t=t, target=x1 - x0)


def _logit_normal(batch: int, mean: float, std: float, generator: torch.Generator | None, device) -> torch.Tensor:
    # Esser et al. 2024 (SD3): weights the middle of the path, where the velocity is hardest to predict.
    normal = torch.randn(batch, generator=generator, device=device) * std + mean
    return torch.sigmoid(normal)


def _uniform(batch: int, mean: float, std: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=device)


T_SAMPLERS = {"logit_normal": _logit_normal, "uniform": _uniform}


def sample_time(batch: int, scheme: str = "logit_normal", mean: float = 0.0, std: float = 1.0,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Training times t (B,) in (0, 1) drawn by `scheme` (logit_normal | uniform)."""
    t = choose("t sampling scheme", scheme, T_SAMPLERS)(batch, mean, std, generator, device)
    return t.clamp(1e-5, 1 - 1e-5)


def flow_matching_loss(velocity: torch.Tensor, sample: PathSample, weight: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Conditional flow-matching loss: mean squared error to the path's velocity target (fp32).

    `weight` (B, 1, H, W), if given, scales each pixel's error (every channel alike) before the mean. A plain mean of
    weighted errors, not a ratio of sums, so ranks that each average their rows agree with one process on all rows.
    """
    squared = (velocity.float() - sample.target.float()) ** 2
    return torch.mean(squared if weight is None else weight.float() * squared)
