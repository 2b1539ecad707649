"""Apply an exported segmenter to a volume node and write the result into a segment (the Segment Editor effect and
the module's "Apply" both call this; no Qt here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from .nodes import add_segment, array_from_volume, write_mask_to_segment

# IJK axis (0 = x/I, 1 = y/J, 2 = z/K, as in the library's `slice_axis`) → numpy axis of a (K, J, I) array.
NUMPY_AXIS = {0: 2, 1: 1, 2: 0}


class Segmenter(Protocol):
    def segment_array(self, image: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, C) image → (H, W) bool mask at the image's own size."""


def load_segmenter(model_folder: Path) -> Segmenter:
    """The library's loader (imports torch, so only here, on first use)."""
    from AlignFlowLib.segmenter.export import ExportedSegmenter

    return ExportedSegmenter.load(Path(model_folder))


def slice_axis(model_folder: Path | None) -> int:
    """The axis the segmenter was trained along (model.json `slice_axis`), axial (2) when not stated."""
    if model_folder is None:
        return 2
    path = Path(model_folder) / "model.json"
    info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return int(info.get("slice_axis", 2))


def segment_volume(segmenter: Segmenter, voxels: np.ndarray, axis: int = 2) -> np.ndarray:
    """(K, J, I[, C]) voxels → (K, J, I) bool, slice by slice along IJK `axis` (one slice for a 2-D image)."""
    spatial = voxels.shape[:3]
    if spatial[0] == 1:
        return segmenter.segment_array(voxels[0]).astype(bool)[None]
    numpy_axis = NUMPY_AXIS[axis]
    mask = np.zeros(spatial, bool)
    for index in range(spatial[numpy_axis]):
        where = [slice(None)] * 3
        where[numpy_axis] = index
        mask[tuple(where)] = segmenter.segment_array(voxels[tuple(where)])
    return mask


def apply_segmenter(scene, volume_node, segmentation_node, segment_id: str | None,
                    exported_folder: Path | None = None, *, segmenter: Segmenter | None = None,
                    segment_name: str = "lesion") -> int:
    """Segment `volume_node` with the exported segmenter in `exported_folder` (or a ready `segmenter`, for tests)
    and replace the content of `segment_id` (a new segment named `segment_name` when None/empty); other segments
    are untouched. 3-D scalar volumes go slice by slice (along model.json's `slice_axis`, z by default), a 2-D RGB
    vector volume in one call. Returns the number of voxels filled.

    Raises:
        ValueError: neither an exported folder nor a segmenter, or a volume without voxels.
    """
    if segmenter is None:
        if exported_folder is None:
            raise ValueError("choose an exported segmenter folder (model.pt + model.json)")
        segmenter = load_segmenter(exported_folder)
    voxels = array_from_volume(volume_node)
    mask = segment_volume(segmenter, voxels, slice_axis(exported_folder))
    if not segment_id:
        segment_id = add_segment(segmentation_node, segment_name)
    write_mask_to_segment(segmentation_node, segment_id, mask, volume_node)
    return int(mask.sum())
