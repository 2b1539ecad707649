"""Maximum mean discrepancy (Gretton et al. 2012), the reward of stage 2: reward = −MMD²_u(φ(generated), φ(refs)).

Pure maths on feature tensors; fp32 (fp64 for fp64 inputs) inside whatever the caller's autocast.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import choose

DEFAULT_BANDWIDTHS = (0.5, 1.0, 2.0, 4.0)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) → (n, m) squared Euclidean distances, clamped at 0 against round-off."""
    return (a.square().sum(1, keepdim=True) + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def _rbf_kernels(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None):
    """Sum of Gaussian kernels at multiples of the median heuristic h: the median squared distance between distinct
    points of the pooled sample, detached, so the optimiser cannot shrink the scale instead of the discrepancy.
    The kernel is shift-invariant, so the pooled sample is first centred (detached mean): ‖a‖² + ‖b‖² − 2a·b then
    cancels less in fp32."""
    n = len(x)
    pooled = torch.cat([x, y])                                                   # (n + m, d)
    pooled = pooled - pooled.detach().mean(0)
    distances = _squared_distances(pooled, pooled)                               # (n + m, n + m)
    with torch.no_grad():
        off_diagonal = ~torch.eye(len(pooled), dtype=torch.bool, device=pooled.device)
        scale = distances[off_diagonal].median().clamp_min(torch.finfo(distances.dtype).tiny)
    kernel = sum(torch.exp(-distances / (2 * s * s * scale)) for s in bandwidths or DEFAULT_BANDWIDTHS)
    return kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]


def _polynomial_kernels(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None):
    """KID's cubic kernel k(a, b) = (a·b / d + 1)³ (Bińkowski et al. 2018)."""
    d = x.shape[1]
    return [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]


KERNELS = {"rbf": _rbf_kernels, "kid": _polynomial_kernels}


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf",
                  bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """Unbiased MMD² between samples x (n, d) and y (m, d): diagonal terms excluded, so it can be negative and its
    expectation is 0 when both come from one distribution (Gretton et al. 2012, eq. 3). Differentiable w.r.t. x and
    y; returns a 0-d fp32 tensor (fp64 if an input is fp64).

    kernel: "rbf" — Σ_s exp(−‖a − b‖² / (2 s² h)) over multipliers s in `bandwidths` (default 0.5, 1, 2, 4), h the
    median non-zero squared pairwise distance of the pooled sample (detached); "kid" — (a·b / d + 1)³.

    Raises:
        ValueError: n < 2 or m < 2 (the within-sample terms are undefined), mismatched d, or a bandwidth ≤ 0.
        AlignFlowError: an unknown kernel name (the message lists the valid ones).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD needs features (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples on each side, got {n} and {m}")
    if bandwidths is not None and (len(bandwidths) == 0 or min(bandwidths) <= 0):
        raise ValueError(f"bandwidth multipliers must be positive, got {list(bandwidths)}")
    kernel_function = choose("MMD kernel", kernel, KERNELS)
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    with torch.autocast(x.device.type, enabled=False):
        k_xx, k_yy, k_xy = kernel_function(x.to(dtype), y.to(dtype), bandwidths)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return term_xx + term_yy - 2 * k_xy.mean()
