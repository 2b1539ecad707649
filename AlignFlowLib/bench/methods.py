"""The benchmark's method names (DESIGN.md §2); torch-free so that `alignflow --help` can list them cheaply.

There is no separate "strong augmentation" method: strong photometric augmentation is part of the one segmenter
recipe every method uses (bench/PROTOCOL.md), so `source_only` is that baseline.
"""

METHODS = ("source_only", "classic_augmentation", "histogram_matching", "fda", "stage1_synthetic", "alignflow",
           "alignflow_real_masks")
NON_GENERATIVE = ("source_only", "classic_augmentation", "histogram_matching", "fda")

# Upper bounds among the checks; the rest are lower bounds.
LOWER_IS_BETTER = ("kid_ratio_aligned_to_stage1", "k5_minus_k10_abs")


def meets_target(name: str, value: float, threshold: float) -> bool:
    return value <= threshold if name in LOWER_IS_BETTER else value >= threshold
