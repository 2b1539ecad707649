"""Maximum mean discrepancy (Gretton et al. 2012), the reward of stage 2: reward = −MMD²_u(φ(generated), φ(refs)).

Pure maths on feature tensors; fp32 inside whatever the caller's autocast.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import choose

DEFAULT_BANDWIDTHS = (0.5, 1.0, 2.0, 4.0)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.square().sum(1, keepdim=True) + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def _rbf_kernels(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None):
    """Sum of Gaussian kernels at multiples of the median pairwise squared distance (detached, so the optimiser
    cannot shrink the scale instead of the discrepancy)."""
    dxx, dyy, dxy = _squared_distances(x, x), _squared_distances(y, y), _squared_distances(x, y)
    with torch.no_grad():
        pooled = torch.cat([dxx.flatten(), dyy.flatten(), dxy.flatten()])
        scale = pooled[pooled > 0].median() if (pooled > 0).any() else torch.ones((), device=x.device)
    kernels = [torch.zeros_like(d) for d in (dxx, dyy, dxy)]
    for s in bandwidths or DEFAULT_BANDWIDTHS:
        for kernel, distance in zip(kernels, (dxx, dyy, dxy)):
            kernel += torch.exp(-distance / (2 * s * s * scale))
    return kernels


def _polynomial_kernels(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None):
    """KID's cubic kernel k(a, b) = (a·b / d + 1)³ (Bińkowski et al. 2018)."""
    d = x.shape[1]
    return [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]


KERNELS = {"rbf": _rbf_kernels, "kid": _polynomial_kernels}


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf",
                  bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """Unbiased MMD² between samples x (n, d) and y (m, d): diagonal terms excluded, so it can be negative and its
    expectation is 0 when both come from one distribution. Differentiable w.r.t. x and y; returns a 0-d fp32 tensor.

    kernel: "rbf" — Σ_s exp(−‖a − b‖² / (2 s² h)) over multipliers s in `bandwidths` (default 0.5, 1, 2, 4), h the
    median non-zero squared pairwise distance of the pooled sample (detached); "kid" — (a·b / d + 1)³.

    Raises:
        ValueError: n < 2 or m < 2 (the within-sample terms are undefined).
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples on each side, got {n} and {m}")
    kernel_function = choose("MMD kernel", kernel, KERNELS)
    with torch.autocast(x.device.type, enabled=False):
        k_xx, k_yy, k_xy = kernel_function(x.float(), y.float(), bandwidths)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return term_xx + term_yy - 2 * k_xy.mean()
