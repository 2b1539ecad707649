"""Segment a whole image file slice by slice with an exported segmenter (`alignflow segmenter predict`).

No MRML and no Qt, and nothing heavy at import: the Segment Editor effect runs this in a separate process (so Slicer's
GUI stays responsive and Cancel works), and the MRML bridge reuses `segment_volume` in-process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .errors import InputDataError, UsageError

# IJK axis (0 = x/I, 1 = y/J, 2 = z/K, as model.json's `slice_axis`) → numpy axis of a (K, J, I) array.
NUMPY_AXIS = {0: 2, 1: 1, 2: 0}
# Single-file formats only: the result is renamed into place, and a header + raw pair cannot be renamed atomically.
LABEL_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")


class Segmenter(Protocol):
    def segment_array(self, image: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, C) image → (H, W) bool mask at the image's own size."""


def slice_axis(model_folder: Path | None) -> int:
    """The axis the segmenter was trained along (model.json `slice_axis`), axial (2) when not stated."""
    if model_folder is None:
        return 2
    path = Path(model_folder) / "model.json"
    info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return int(info.get("slice_axis", 2))


def count_slices(shape: tuple[int, ...], axis: int = 2) -> int:
    """How many `segment_array` calls `segment_volume` makes for (K, J, I[, C]) voxels: the progress total."""
    return 1 if shape[0] == 1 else int(shape[NUMPY_AXIS[axis]])


def segment_volume(segmenter: Segmenter, voxels: np.ndarray, axis: int = 2,
                   on_slice: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(K, J, I[, C]) voxels → (K, J, I) bool, slice by slice along IJK `axis` (one call for a 2-D image).
    `on_slice(done, total)` after each slice drives progress reporting."""
    spatial = voxels.shape[:3]
    total = count_slices(voxels.shape, axis)
    if spatial[0] == 1:
        mask = np.asarray(segmenter.segment_array(voxels[0])).astype(bool)[None]
        if on_slice is not None:
            on_slice(1, 1)
        return mask
    numpy_axis = NUMPY_AXIS[axis]
    mask = np.zeros(spatial, bool)
    for index in range(total):
        where = [slice(None)] * 3
        where[numpy_axis] = index
        mask[tuple(where)] = segmenter.segment_array(voxels[tuple(where)])
        if on_slice is not None:
            on_slice(index + 1, total)
    return mask


def check_label_path(path: Path) -> Path:
    """Refuse an output format that cannot be written atomically, before any work is done."""
    name = Path(path).name.lower()
    if not any(name.endswith(suffix) for suffix in LABEL_SUFFIXES):
        raise UsageError(f"the output must end in one of {', '.join(LABEL_SUFFIXES)}", path)
    return Path(path)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:120]


def read_voxels(path: Path) -> tuple[Any, np.ndarray]:
    """An image file → (its SimpleITK image, voxels as (K, J, I[, C])); a 2-D image is one slice.

    Raises:
        InputDataError: missing or unreadable file, not 2-D/3-D, or not 1, 3 or 4 components per voxel.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputDataError("file not found", path)
    try:
        image = sitk.ReadImage(str(path))
        voxels = sitk.GetArrayFromImage(image)
    except Exception as error:  # SimpleITK raises RuntimeError with a multi-line ITK trace
        raise InputDataError(f"cannot be read as an image ({_first_line(error)})", path) from error
    if image.GetDimension() not in (2, 3):
        raise InputDataError(f"has {image.GetDimension()} dimensions; a 2-D image or a 3-D volume is expected", path)
    components = image.GetNumberOfComponentsPerPixel()
    if components not in (1, 3, 4):
        raise InputDataError(f"has {components} components per voxel; 1 (grey) or 3 (RGB) is expected", path)
    if image.GetDimension() == 2:
        voxels = voxels[None]
    if voxels.size == 0:
        raise InputDataError("has no voxels", path)
    return image, voxels


def write_label(mask: np.ndarray, like: Any, path: Path) -> Path:
    """Write a (K, J, I) mask as a 0/1 uint8 image with `like`'s exact geometry (size, spacing, origin, direction),
    atomically: a temporary file beside `path` renamed into place, so a cancel never leaves half a file."""
    import SimpleITK as sitk

    path = Path(path)
    values = np.asarray(mask, dtype=np.uint8)
    label = sitk.GetImageFromArray(values[0] if like.GetDimension() == 2 else values)
    label.CopyInformation(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in LABEL_SUFFIXES if path.name.lower().endswith(s))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")  # the suffix picks SimpleITK's writer
    try:
        try:
            sitk.WriteImage(label, str(temporary), True)
        except RuntimeError as error:
            raise InputDataError(f"cannot be written ({_first_line(error)})", path) from error
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
