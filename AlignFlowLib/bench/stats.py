"""Paired differences between two methods with a cluster bootstrap over test sequences, reference sets and seeds.

Test frames from one video are near-duplicates, so single frames are not independent samples: the bootstrap draws
whole clusters (sequences) with replacement, and at the same time reference sets and segmenter seeds, so the
interval covers every source of spread the benchmark has. Both methods are scored on the same images with the same
seeds and reference sets, so each draw compares like with like (a paired design).
"""

from __future__ import annotations

import statistics
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


@dataclass(frozen=True)
class IntervalBudget:
    """Where the width of a paired interval comes from, as standard deviations in the scores' units.

    Model: difference(set r, seed s, cluster c) = mean + set_r + seed_s + (set × seed)_rs + cluster_c + residual.
    A seed effect is shared across reference sets because a reference-free method's segmenter for seed s is the
    same model in every set."""
    sd_clusters: float            # how much the true difference varies from one test sequence to the next
    sd_reference_sets: float
    sd_seeds: float
    sd_set_seed: float            # set × seed interaction
    sd_residual: float            # segmenter × sequence interaction and noise
    num_clusters: int
    num_reference_sets: int
    num_seeds: int

    def standard_error(self, num_seeds: int | None = None, num_reference_sets: int | None = None,
                       num_clusters: int | None = None) -> float:
        """Normal-approximation standard error of the mean difference for a design of that size."""
        s = self.num_seeds if num_seeds is None else num_seeds
        r = self.num_reference_sets if num_reference_sets is None else num_reference_sets
        c = self.num_clusters if num_clusters is None else num_clusters
        return float(np.sqrt(self.sd_clusters ** 2 / c + self.sd_reference_sets ** 2 / r + self.sd_seeds ** 2 / s
                             + self.sd_set_seed ** 2 / (r * s) + self.sd_residual ** 2 / (r * s * c)))

    def half_width(self, num_seeds: int | None = None, num_reference_sets: int | None = None,
                   num_clusters: int | None = None, confidence: float = 0.95) -> float:
        return _z(0.5 + confidence / 2) * self.standard_error(num_seeds, num_reference_sets, num_clusters)

    def floor(self, confidence: float = 0.95) -> float:
        """The half-width that no number of seeds or reference sets goes below on these test clusters."""
        return _z(0.5 + confidence / 2) * self.sd_clusters / float(np.sqrt(self.num_clusters))

    def detectable_effect(self, num_seeds: int | None = None, num_reference_sets: int | None = None,
                          num_clusters: int | None = None, confidence: float = 0.95, power: float = 0.8) -> float:
        """The smallest true difference whose interval's lower end clears 0 with probability `power`."""
        return (_z(0.5 + confidence / 2) + _z(power)) * self.standard_error(num_seeds, num_reference_sets,
                                                                          num_clusters)


def _z(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


def _two_way(table: np.ndarray) -> tuple[float, float, float]:
    """Mean squares (rows, columns, residual) of a two-way layout with one value per cell."""
    rows, cols = table.shape
    grand, row_means, col_means = table.mean(), table.mean(1), table.mean(0)
    residual = table - row_means[:, None] - col_means[None, :] + grand
    return (float(cols * ((row_means - grand) ** 2).sum() / (rows - 1)),
            float(rows * ((col_means - grand) ** 2).sum() / (cols - 1)),
            float((residual ** 2).sum() / ((rows - 1) * (cols - 1))))


def interval_budget(a: np.ndarray, b: np.ndarray, clusters: Sequence[str]) -> IntervalBudget:
    """a, b: per-image scores shaped (reference sets, seeds, images), as for `paired_difference`.

    Variance components from the expected mean squares of the balanced layout, clipped at 0: first segmenters
    (set, seed) × clusters with each cell the mean difference over one cluster's images, then the segmenters' means
    as sets × seeds. Clusters count equally here, while the point estimate weighs them by their image counts, so
    this explains an interval rather than reproducing it."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"expected two (reference sets, seeds, images) arrays of one shape, got {a.shape}, {b.shape}")
    diff = a - b
    if diff.ndim != 3 or diff.shape[-1] != len(clusters):
        raise ValueError(f"expected (reference sets, seeds, images) arrays with {len(clusters)} images, "
                         f"got {diff.shape}")
    num_r, num_s = diff.shape[:2]
    sums, counts, _ = cluster_sums(diff.reshape(num_r * num_s, -1), clusters)
    cells = sums / counts                                                  # (segmenters, clusters)
    num_c = cells.shape[1]
    if min(num_r, num_s, num_c) < 2:
        raise ValueError(f"need at least 2 reference sets, 2 seeds and 2 clusters, got {num_r}, {num_s}, {num_c}")
    _, ms_clusters, ms_residual = _two_way(cells)
    ms_sets, ms_seeds, ms_set_seed = _two_way(cells.mean(1).reshape(num_r, num_s))
    # A segmenter's mean carries residual/num_c of noise, which the set × seed mean square includes.
    return IntervalBudget(
        sd_clusters=float(np.sqrt(max(ms_clusters - ms_residual, 0.0) / (num_r * num_s))),
        sd_reference_sets=float(np.sqrt(max(ms_sets - ms_set_seed, 0.0) / num_s)),
        sd_seeds=float(np.sqrt(max(ms_seeds - ms_set_seed, 0.0) / num_r)),
        sd_set_seed=float(np.sqrt(max(ms_set_seed - ms_residual / num_c, 0.0))),
        sd_residual=float(np.sqrt(ms_residual)), num_clusters=num_c, num_reference_sets=num_r, num_seeds=num_s)
