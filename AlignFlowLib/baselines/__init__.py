"""Data-level baselines the benchmark carries: classic augmentation, histogram matching and FDA to the references."""

from .augment import classic_augment
from .fda import fourier_domain_adaptation
from .histogram import match_histograms

__all__ = ["classic_augment", "fourier_domain_adaptation", "match_histograms"]
