"""Mask post-processing and diversity statistics for the mask generator."""

from .postprocess import MaskFilterResult, clean_mask, pairwise_iou, postprocess_masks

__all__ = ["MaskFilterResult", "clean_mask", "pairwise_iou", "postprocess_masks"]
