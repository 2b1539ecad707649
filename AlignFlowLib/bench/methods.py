"""The benchmark's method names (DESIGN.md §2); torch-free so that `alignflow --help` can list them cheaply."""

METHODS = ("source_only", "strong_augmentation", "classic_augmentation", "histogram_matching", "fda",
           "stage1_synthetic", "alignflow", "alignflow_real_masks")
NON_GENERATIVE = ("source_only", "strong_augmentation", "classic_augmentation", "histogram_matching", "fda")
