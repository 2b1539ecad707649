"""The stage-2 reward (MMD² on frozen EfficientNet-Lite0 features) and the generator metrics (FID-EL0, KID-EL0)."""

from .colour import tissue_colour
from .features import FeatureExtractor, load_feature_extractor
from .metrics import frechet_distance, generator_metrics, image_features, kernel_inception_distance
from .mmd import mmd2_unbiased

__all__ = ["FeatureExtractor", "load_feature_extractor", "mmd2_unbiased", "frechet_distance",
           "kernel_inception_distance", "generator_metrics", "image_features", "tissue_colour"]
