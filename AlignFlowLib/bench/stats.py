"""Paired differences between two methods with a cluster bootstrap over test sequences, reference sets and seeds.

Test frames from one video are near-duplicates, so single frames are not independent samples: the bootstrap draws
whole clusters (sequences) with replacement, and at the same time reference sets and segmenter seeds, so the
interval covers every source of spread the benchmark has. Both methods are scored on the same images with the same
seeds and reference sets, so each draw compares like with like (a paired design).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    mean_diff: float        # mean over reference sets × seeds × images of (a − b), in the scores' units
    ci_low: float           # percentile bootstrap interval
    ci_high: float
    num_clusters: int
    num_images: int
    num_reference_sets: int
    num_seeds: int
    num_bootstrap: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def cluster_sums(values: np.ndarray, clusters: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """values (..., N) per image → (..., C) sums per cluster, (C,) image counts, and the cluster names in order."""
    names = sorted(set(clusters))
    onehot = np.zeros((len(clusters), len(names)))
    onehot[np.arange(len(clusters)), [names.index(c) for c in clusters]] = 1.0
    return np.asarray(values, dtype=float) @ onehot, onehot.sum(0), names


def paired_difference(a: np.ndarray, b: np.ndarray, clusters: Sequence[str], num_bootstrap: int = 4000,
                      seed: int = 0, confidence: float = 0.95) -> PairedDifference:
    """a, b: per-image scores shaped (reference sets R, seeds S, images N); a reference-free method is broadcast
    over R by the caller. Returns mean(a − b) and a percentile interval from resampling R, S and clusters jointly."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two (reference sets, seeds, images) arrays of one shape, got {a.shape}, {b.shape}")
    if a.shape[-1] != len(clusters):
        raise ValueError(f"{a.shape[-1]} images but {len(clusters)} cluster labels")
    diff = a - b
    sums, counts, names = cluster_sums(diff, clusters)             # (R, S, C), (C,)
    num_r, num_s, num_c = sums.shape
    rng = np.random.default_rng(seed)
    # Multiplicity of every reference set, seed and cluster in each bootstrap draw.
    w_r = rng.multinomial(num_r, np.full(num_r, 1 / num_r), size=num_bootstrap)   # (B, R)
    w_s = rng.multinomial(num_s, np.full(num_s, 1 / num_s), size=num_bootstrap)   # (B, S)
    w_c = rng.multinomial(num_c, np.full(num_c, 1 / num_c), size=num_bootstrap)   # (B, C)
    totals = np.einsum("br,bs,bc,rsc->b", w_r, w_s, w_c, sums)
    denominators = num_r * num_s * (w_c @ counts)
    draws = totals / denominators
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high), num_c, int(a.shape[-1]), num_r, num_s,
                            num_bootstrap)
