"""Generator metrics on EfficientNet-Lite0 features: FID-EL0 and KID-EL0 (not comparable to Inception values)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from .features import FeatureExtractor
from .mmd import mmd2_unbiased


def _numpy(features) -> np.ndarray:
    return features.detach().double().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features,
                                                                                                     np.float64)


def frechet_distance(feat_a, feat_b, ridge: float = 1e-6) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½) (Heusel et al. 2017). With fewer samples than dimensions the covariances
    are singular (a small ridge keeps sqrtm stable) and FID is biased upwards: compare values at equal sample sizes."""
    a, b = _numpy(feat_a), _numpy(feat_b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False) + ridge * np.eye(a.shape[1])
    cov_b = np.cov(b, rowvar=False) + ridge * np.eye(b.shape[1])
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def kernel_inception_distance(feat_a, feat_b, num_subsets: int = 10, subset_size: int | None = None,
                              seed: int = 0) -> tuple[float, float]:
    """Mean and std over random subsets of the unbiased cubic-kernel MMD² (Bińkowski et al. 2018)."""
    a = torch.as_tensor(_numpy(feat_a))
    b = torch.as_tensor(_numpy(feat_b))
    size = subset_size or min(len(a), len(b), 1000)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        index_a = torch.randperm(len(a), generator=generator)[:size]
        index_b = torch.randperm(len(b), generator=generator)[:size]
        values.append(float(mmd2_unbiased(a[index_a], b[index_b], "kid")))
    return float(np.mean(values)), float(np.std(values))


@torch.no_grad()
def _batched(function, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    return torch.cat([function(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


@torch.no_grad()
def generator_metrics(extractor: FeatureExtractor, generated: torch.Tensor, target: torch.Tensor,
                      batch_size: int = 64) -> dict[str, float]:
    """FID-EL0, KID-EL0 (deep features) and the reward's MMD² (full features) of generated vs target images.

    generated (N, C, H, W), target (M, C, H, W) in [−1, 1], N, M ≥ 2; moved batch by batch to the extractor's device.
    Returns floats {"fid_el0", "kid_el0", "kid_el0_std", "mmd_el0"}.
    """
    device = next(extractor.parameters()).device
    deep_g = _batched(extractor.deep_features, generated, device, batch_size)
    deep_t = _batched(extractor.deep_features, target, device, batch_size)
    full_g = _batched(extractor, generated, device, batch_size)
    full_t = _batched(extractor, target, device, batch_size)
    kid, kid_std = kernel_inception_distance(deep_g, deep_t)
    return {"fid_el0": frechet_distance(deep_g, deep_t), "kid_el0": kid, "kid_el0_std": kid_std,
            "mmd_el0": float(mmd2_unbiased(full_g, full_t, "rbf"))}
