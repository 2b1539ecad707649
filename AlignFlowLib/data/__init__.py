"""Data: reading pair and reference folders into the working representation, writing them, and the phantom domains.

Working images are (N, C, S, S) float32 in [-1, 1]; masks (N, 1, S, S) float32 in {0, 1}.
"""

from .folders import ImageSet, PairSet, load_pairs, load_references, natural_key, write_images, write_pairs
from .io import (IMAGE_SUFFIXES, VOLUME_SUFFIXES, Letterbox, binarize_mask, file_stem, letterbox_geometry,
                 normalize_intensity, prepare_image, prepare_mask, read_image, read_slices, to_uint8, undo_letterbox,
                 write_png)
from .phantoms import PhantomPaths, make_phantom_pairs, write_phantom_dataset

__all__ = [
    "PairSet", "ImageSet", "load_pairs", "load_references", "write_pairs", "write_images", "natural_key",
    "IMAGE_SUFFIXES", "VOLUME_SUFFIXES", "Letterbox", "letterbox_geometry", "file_stem", "read_image", "read_slices",
    "normalize_intensity", "prepare_image", "prepare_mask", "binarize_mask", "undo_letterbox", "to_uint8", "write_png",
    "PhantomPaths", "make_phantom_pairs", "write_phantom_dataset",
]
