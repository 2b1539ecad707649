"""Generator metrics on EfficientNet-Lite0 features: FID-EL0 and KID-EL0 (not comparable to Inception values)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from .features import DEEP_DIM, FeatureExtractor
from .mmd import mmd2_unbiased


def _numpy(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        return features.detach().double().cpu().numpy()
    return np.asarray(features, dtype=np.float64)


def frechet_distance(feat_a, feat_b, ridge: float = 1e-6) -> float:
    """‖μa − μb‖² + Tr(Σa) + Tr(Σb) − 2 Tr((ΣaΣb)^½) (Heusel et al. 2017, FID) on features (n, d) and (m, d), n, m ≥ 2.

    Tr((ΣaΣb)^½) is the sum of square roots of the eigenvalues of ΣaΣb, never a general `sqrtm`:
    - few samples (min(n, m) ≤ d, the usual case at 1280-d): with centred features A (n, d), B (m, d) those
      eigenvalues are the squared singular values of A Bᵀ / √((n−1)(m−1)), so the trace is its nuclear norm — exact,
      O(n·m·d), and the ridge is not needed;
    - many samples: the eigenvalues of the symmetric PSD Σa^½ Σb Σa^½, with `ridge` added to both covariances.
    With fewer samples than dimensions FID is strongly biased upwards (Chong & Forsyth 2020): compare values only at
    equal sample sizes.

    Raises:
        ValueError: fewer than 2 samples on a side, or different d.
    """
    a, b = _numpy(feat_a), _numpy(feat_b)
    if a.ndim != 2 or b.ndim != 2 or len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"FID needs features (n ≥ 2, d) and (m ≥ 2, d), got {a.shape} and {b.shape}")
    (n, d), m = a.shape, len(b)
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    if min(n, m) <= d:
        trace_a, trace_b = (centred_a ** 2).sum() / (n - 1), (centred_b ** 2).sum() / (m - 1)
        cross = centred_a @ centred_b.T / np.sqrt((n - 1) * (m - 1))                 # (n, m)
        trace_root = linalg.svdvals(cross).sum()
    else:
        cov_a = centred_a.T @ centred_a / (n - 1) + ridge * np.eye(d)
        cov_b = centred_b.T @ centred_b / (m - 1) + ridge * np.eye(d)
        values, vectors = linalg.eigh(cov_a)
        root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T                  # Σa^½
        product = root_a @ cov_b @ root_a
        trace_a, trace_b = np.trace(cov_a), np.trace(cov_b)
        trace_root = np.sqrt(linalg.eigvalsh((product + product.T) / 2).clip(min=0)).sum()
    return float(mean_term + trace_a + trace_b - 2 * trace_root)


def kernel_inception_distance(feat_a, feat_b, num_subsets: int = 10, subset_size: int | None = None,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018, "Demystifying MMD GANs", §4): mean and std over `num_subsets` random subsets of
    the unbiased MMD² with the cubic kernel (a·b / d + 1)³, computed in fp64.

    feat_a (n, d), feat_b (m, d); subset_size defaults to min(n, m, 1000) and must be ≥ 2; subsets are drawn without
    replacement from a generator seeded by `seed`, so the result is reproducible.
    """
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
def image_features(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The extractor's full features (N, D) of images (N, C, H, W) in [−1, 1], on the CPU; moved batch by batch to
    the extractor's device. Lets a caller that measures several generators against one target set extract its
    features once (`generator_metrics(..., target_features=...)`)."""
    device = next(extractor.parameters()).device
    return torch.cat([extractor(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


@torch.no_grad()
def generator_metrics(extractor: FeatureExtractor, generated: torch.Tensor, target: torch.Tensor,
                      batch_size: int = 64, target_features: torch.Tensor | None = None) -> dict[str, float]:
    """FID-EL0, KID-EL0 (deep features) and the reward's MMD² (full features) of generated vs target images.

    generated (N, C, H, W), target (M, C, H, W) in [−1, 1], N, M ≥ 2; `target_features`, when given, must be
    `image_features(extractor, target)` and replaces extracting them again.
    Returns floats {"fid_el0", "kid_el0", "kid_el0_std", "mmd_el0"}.
    """
    full_g = image_features(extractor, generated, batch_size)                    # (N, D)
    full_t = image_features(extractor, target, batch_size) if target_features is None else target_features.cpu()
    if full_t.shape != (len(target), full_g.shape[1]):
        raise ValueError(f"target_features {tuple(full_t.shape)} do not fit {len(target)} target images of "
                         f"{full_g.shape[1]} features")
    deep_g, deep_t = full_g[:, :DEEP_DIM], full_t[:, :DEEP_DIM]                 # the pooled 1280-d part
    kid, kid_std = kernel_inception_distance(deep_g, deep_t)
    return {"fid_el0": frechet_distance(deep_g, deep_t), "kid_el0": kid, "kid_el0_std": kid_std,
            "mmd_el0": float(mmd2_unbiased(full_g, full_t, "rbf"))}
