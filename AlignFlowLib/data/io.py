"""Reading images and masks into the working representation, and writing them back.

Working images are (C, S, S) float32 in [−1, 1]; masks (1, S, S) float32 in {0, 1}. 2-D formats go through PIL,
volumes (NRRD, NIfTI, MHA) through SimpleITK; 3-D volumes are used as 2-D slices along a chosen axis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, UnidentifiedImageError

from ..errors import InputDataError, choose

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def file_suffix(path: Path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def file_stem(path: Path) -> str:
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def is_supported(path: Path) -> bool:
    return file_suffix(path) in IMAGE_SUFFIXES + VOLUME_SUFFIXES


def _as_hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def _read_volume_array(path: Path) -> tuple[np.ndarray, bool]:
    """SimpleITK array in (z, y, x[, c]) order, or (y, x[, c]) for 2-D files; and whether it has components."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputDataError(f"cannot be read as an image ({str(error).strip().splitlines()[-1][:100]})",
                             path) from error
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        array = array[0]
    return array, image.GetNumberOfComponentsPerPixel() > 1


def read_slices(path: Path, slice_axis: int = 2) -> list[np.ndarray]:
    """All 2-D slices (H, W, C) of a file along `slice_axis` (0=x, 1=y, 2=z, SimpleITK order); one for 2-D files."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError("file not found", path)
    if file_suffix(path) in IMAGE_SUFFIXES:
        return [read_image(path)]
    array, is_vector = _read_volume_array(path)
    spatial = array.ndim - (1 if is_vector else 0)
    if spatial == 2:
        return [_as_hwc(array)]
    numpy_axis = {0: 2, 1: 1, 2: 0}[slice_axis]  # SimpleITK (x, y, z) → numpy (z, y, x)
    return [_as_hwc(np.take(array, index, axis=numpy_axis)) for index in range(array.shape[numpy_axis])]


def read_image(path: Path) -> np.ndarray:
    """A 2-D image (H, W, C), C ∈ {1, 3}, dtype kept; a 3-D volume is an error (use `read_slices`)."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError("file not found", path)
    if file_suffix(path) in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as picture:
                if picture.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
                    picture = picture.convert("RGB")
                array = np.asarray(picture)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise InputDataError(f"cannot be read as an image ({type(error).__name__})", path) from error
    elif file_suffix(path) in VOLUME_SUFFIXES:
        slices = read_slices(path)
        if len(slices) != 1:
            raise InputDataError(f"is a 3-D volume with {len(slices)} slices; a 2-D image is expected here", path)
        array = slices[0]
    else:
        raise InputDataError(f"unsupported file type; use one of {', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}",
                             path)
    array = _as_hwc(array)
    if array.shape[2] == 4:
        array = array[..., :3]
    if array.shape[2] not in (1, 3):
        raise InputDataError(f"has {array.shape[2]} channels; 1 (grey) or 3 (RGB) expected", path)
    return array


def normalize_intensity(array: np.ndarray) -> np.ndarray:
    """→ float32 in [−1, 1]. uint8: x/127.5 − 1 (photographs keep their absolute brightness, which is the domain
    signal). Anything else (CT, MR, 16-bit): per-image 0.5–99.5 percentile window, clipped — robust to outliers."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 127.5 - 1.0
    values = array.astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low) * 2 - 1, -1, 1)


@dataclass(frozen=True)
class Letterbox:
    """Geometry of the resize into the working square, to map working-size masks back to the original image."""

    original_hw: tuple[int, int]
    scale: float
    offset_yx: tuple[int, int]
    resized_hw: tuple[int, int]
    mode: str


RESIZE_MODES = ("letterbox", "stretch", "crop")


def _geometry(height: int, width: int, size: int, mode: str) -> Letterbox:
    choose("resize mode", mode, RESIZE_MODES)
    if mode == "stretch":
        return Letterbox((height, width), 1.0, (0, 0), (size, size), mode)
    scale = size / max(height, width) if mode == "letterbox" else size / min(height, width)
    resized = (max(1, round(height * scale)), max(1, round(width * scale)))
    offset = ((size - resized[0]) // 2, (size - resized[1]) // 2)
    return Letterbox((height, width), scale, offset, resized, mode)


def _place(channels: list[np.ndarray], box: Letterbox, size: int, fill: float) -> np.ndarray:
    """Resized channels (h, w) → (C, size, size): pad (letterbox) or crop (crop) around the centre."""
    out = np.full((len(channels), size, size), fill, np.float32)
    oy, ox = box.offset_yx
    h, w = box.resized_hw
    for index, channel in enumerate(channels):
        src_y0, src_x0 = max(0, -oy), max(0, -ox)
        dst_y0, dst_x0 = max(0, oy), max(0, ox)
        ch, cw = min(h - src_y0, size - dst_y0), min(w - src_x0, size - dst_x0)
        out[index, dst_y0:dst_y0 + ch, dst_x0:dst_x0 + cw] = channel[src_y0:src_y0 + ch, src_x0:src_x0 + cw]
    return out


def _resize_channel(channel: np.ndarray, hw: tuple[int, int], resample) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((hw[1], hw[0]), resample))


def prepare_image(array: np.ndarray, size_px: int, channels: int, resize_mode: str = "letterbox"
                  ) -> tuple[np.ndarray, Letterbox]:
    """(H, W[, C]) raw image → ((channels, S, S) float32 in [−1, 1], geometry). Padding is black (−1)."""
    array = _as_hwc(np.asarray(array))
    values = normalize_intensity(array)
    if channels == 1 and values.shape[2] == 3:
        values = (values @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif channels == 3 and values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    box = _geometry(values.shape[0], values.shape[1], size_px, resize_mode)
    resized = [_resize_channel(values[..., c], box.resized_hw, Image.BILINEAR if max(box.resized_hw) >= max(
        values.shape[:2]) else Image.BOX) for c in range(values.shape[2])]
    return np.clip(_place(resized, box, size_px, -1.0), -1, 1), box


def binarize_mask(array: np.ndarray, path: Path | None = None) -> np.ndarray:
    """(H, W[, C]) mask → (H, W) bool. Two levels: the higher is foreground. Compression noise around two levels is
    binarised at the midpoint with a warning; three or more real labels are an error (binary masks expected)."""
    array = np.asarray(array)
    if array.ndim == 3:
        array = array.max(axis=2)
    values, counts = np.unique(array, return_counts=True)
    if len(values) <= 2:
        return array > values.min() if len(values) == 2 else np.zeros(array.shape, bool)
    low, high = float(values.min()), float(values.max())
    spread = high - low
    near_ends = counts[(values <= low + 0.1 * spread) | (values >= high - 0.1 * spread)].sum()
    if near_ends >= 0.98 * array.size:
        log.warning("%s: mask is not exactly binary (%d distinct values, compression noise?); "
                    "binarised at the midpoint", path, len(values))
        return array > (low + high) / 2
    populated = values[counts > 0.01 * array.size]
    raise InputDataError(f"has {len(values)} distinct values ({len(populated)} labels cover >1% each, e.g. "
                         f"{', '.join(str(v) for v in populated[:5])}); a binary mask is expected", path)


def prepare_mask(array: np.ndarray, size_px: int, resize_mode: str = "letterbox", path: Path | None = None
                 ) -> np.ndarray:
    """(H, W[, C]) mask → (1, S, S) float32 in {0, 1}, resized by area averaging then thresholded at 0.5."""
    binary = binarize_mask(array, path).astype(np.float32)
    box = _geometry(binary.shape[0], binary.shape[1], size_px, resize_mode)
    resampling = Image.BILINEAR if max(box.resized_hw) >= max(binary.shape) else Image.BOX
    resized = _resize_channel(binary, box.resized_hw, resampling)
    return (_place([resized], box, size_px, 0.0) >= 0.5).astype(np.float32)


def undo_letterbox(mask: np.ndarray, box: Letterbox) -> np.ndarray:
    """(S, S) working-size mask → (H, W) at the original image size (nearest), inverting `prepare_image`."""
    size = mask.shape[-1]
    oy, ox = box.offset_yx
    h, w = box.resized_hw
    canvas = np.zeros((h, w), np.float32)
    src_y0, src_x0 = max(0, oy), max(0, ox)
    dst_y0, dst_x0 = max(0, -oy), max(0, -ox)
    ch, cw = min(size - src_y0, h - dst_y0), min(size - src_x0, w - dst_x0)
    canvas[dst_y0:dst_y0 + ch, dst_x0:dst_x0 + cw] = mask[src_y0:src_y0 + ch, src_x0:src_x0 + cw]
    restored = Image.fromarray(canvas, mode="F").resize((box.original_hw[1], box.original_hw[0]), Image.NEAREST)
    return np.asarray(restored) >= 0.5


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [−1, 1] → (H, W, C) uint8."""
    return np.clip((np.asarray(image, np.float32) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def write_png(path: Path, array: np.ndarray) -> None:
    """(H, W) or (H, W, 1|3) uint8 → PNG."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
