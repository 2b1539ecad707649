"""Data: reading pair and reference folders, the working representation, and the phantom generator."""

from .folders import ImageSet, PairSet, load_pairs, load_references, write_images, write_pairs
from .io import Letterbox, prepare_image, prepare_mask, read_image, read_slices, undo_letterbox
from .phantoms import PhantomPaths, make_phantom_pairs, write_phantom_dataset

__all__ = ["PairSet", "ImageSet", "load_pairs", "load_references", "write_pairs", "write_images", "Letterbox",
           "prepare_image", "prepare_mask", "read_image", "read_slices", "undo_letterbox", "PhantomPaths",
           "make_phantom_pairs", "write_phantom_dataset"]
