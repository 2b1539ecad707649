"""The downstream segmenter: MONAI networks, training on real + synthetic pairs, metrics, and the export format."""

from .export import ExportedSegmenter, export_segmenter
from .metrics import dice_iou, summarize
from .model import SEGMENTER_ARCHITECTURES, build_segmenter
from .train import evaluate_segmenter, load_segmenter_checkpoint, predict_probs, train_segmenter

__all__ = ["ExportedSegmenter", "export_segmenter", "dice_iou", "summarize", "SEGMENTER_ARCHITECTURES",
           "build_segmenter", "evaluate_segmenter", "load_segmenter_checkpoint", "predict_probs", "train_segmenter"]
