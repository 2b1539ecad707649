"""The benchmark's method names (DESIGN.md §2); torch-free so that `alignflow --help` can list them cheaply."""

METHODS = ("source_only", "strong_augmentation", "classic_augmentation", "histogram_matching", "fda",
           "stage1_synthetic", "alignflow", "alignflow_real_masks")
NON_GENERATIVE = ("source_only", "strong_augmentation", "classic_augmentation", "histogram_matching", "fda")

# Benchmark targets (DESIGN.md §5 and the benchmark issue): mDice/mIoU points, the KID-EL0 ratio aligned / stage-1,
# and |K5 − K10| in mDice points. The last two are upper bounds, the rest lower bounds.
LOWER_IS_BETTER = ("kid_ratio_aligned_to_stage1", "k5_minus_k10_abs")


def meets_target(name: str, value: float, threshold: float) -> bool:
    return value <= threshold if name in LOWER_IS_BETTER else value >= threshold
