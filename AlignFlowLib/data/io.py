"""Reading images and masks into the working representation, and writing them back.

Working images are (C, S, S) float32 in [-1, 1]; masks (1, S, S) float32 in {0, 1}. 2-D formats go through PIL,
volumes (NRRD, NIfTI, MHA) through SimpleITK; 3-D volumes are used as 2-D slices along a chosen axis. Every failure
on user data is an `InputDataError` whose one-line message names the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AlignFlowError, InputDataError, choose

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
RESIZE_MODES = ("letterbox", "stretch", "crop")
_LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's "L" conversion


def file_suffix(path: Path) -> str:
    """Lower-case suffix, ".nii.gz" counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def file_stem(path: Path) -> str:
    """File name without its suffix ("ct.nii.gz" → "ct"): the key that pairs an image with its mask."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def is_supported(path: Path) -> bool:
    return file_suffix(path) in IMAGE_SUFFIXES + VOLUME_SUFFIXES


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text[:120]


def _as_hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def _check_channels(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) → (H, W, 1|3): alpha dropped; 2 or 5+ channels are an error."""
    if array.shape[2] == 4:
        array = array[..., :3]
    if array.shape[2] not in (1, 3):
        raise InputDataError(f"has {array.shape[2]} channels; 1 (grey) or 3 (RGB) is expected", path)
    return np.ascontiguousarray(array)


def _read_2d_file(path: Path) -> np.ndarray:
    """PNG/JPG/TIFF/BMP → (H, W, C). Palette and alpha images become RGB, 1-bit becomes uint8 0/255."""
    try:
        with Image.open(path) as picture:
            if picture.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
                picture = picture.convert("RGB")
            elif picture.mode in ("1", "LA", "La"):
                picture = picture.convert("L")
            array = np.asarray(picture)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise InputDataError(f"cannot be read as an image ({_first_line(error)})", path) from error
    if array.ndim not in (2, 3):
        raise InputDataError(f"cannot be read as an image (array of shape {array.shape})", path)
    return array


def _read_itk(path: Path) -> tuple[np.ndarray, int]:
    """SimpleITK array with singleton spatial axes of a 3-D image squeezed: (y, x[, c]) for 2-D content, (z, y, x[, c])
    for volumes; and the number of spatial dimensions left (2 or 3).

    SimpleITK is imported here, not at module level: 2-D photographs never need it, and a GPU machine that holds
    only torch and the pure-Python requirements can then load PNG/JPG datasets."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except Exception as error:  # SimpleITK raises RuntimeError with a multi-line ITK trace
        raise InputDataError(f"cannot be read as an image ({_first_line(error)})", path) from error
    dimension = image.GetDimension()
    if dimension not in (2, 3):
        raise InputDataError(f"has {dimension} spatial dimensions; 2-D images or 3-D volumes are expected", path)
    size = image.GetSize()  # (x, y, z)
    if dimension == 3 and 1 in size and sum(s > 1 for s in size) <= 2:
        numpy_axis = 2 - size.index(1)  # SimpleITK (x, y, z) → numpy (z, y, x)
        array = np.take(array, 0, axis=numpy_axis)
        dimension = 2
    if image.GetNumberOfComponentsPerPixel() == 1 and array.ndim == dimension:
        array = array[..., None]
    return array, dimension


def read_image(path: Path) -> np.ndarray:
    """One 2-D image as (H, W, C), C in {1, 3}, dtype kept (uint8 stays uint8).

    2-D formats via PIL (RGBA → RGB, palette → RGB, 1-bit/LA → grey); volume formats via SimpleITK when they hold a
    single slice or a 2-D (vector) image.

    Raises:
        InputDataError: the file is missing, unreadable, a 3-D volume (use `read_slices`), or has 2 or 5+ channels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError("file not found", path)
    suffix = file_suffix(path)
    if suffix in IMAGE_SUFFIXES:
        array = _as_hwc(_read_2d_file(path))
    elif suffix in VOLUME_SUFFIXES:
        array, dimension = _read_itk(path)
        if dimension == 3:
            raise InputDataError(f"is a 3-D volume; a 2-D image is expected here ({array.shape[0]} slices; "
                                 "volumes are used slice by slice from image and mask folders)", path)
    else:
        raise InputDataError(f"unsupported file type; use one of {', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}",
                             path)
    return _check_channels(array, path)


def read_slices(path: Path, slice_axis: int = 2) -> list[np.ndarray]:
    """All 2-D slices (H, W, C) of a file along `slice_axis` (0 = x, 1 = y, 2 = z in SimpleITK index order; the
    numpy array from SimpleITK is (z, y, x)). A 2-D file, or a volume with one slice, gives one slice."""
    path = Path(path)
    if slice_axis not in (0, 1, 2):
        raise AlignFlowError(f"slice axis {slice_axis!r} is not one of 0 (x), 1 (y), 2 (z)")
    if file_suffix(path) not in VOLUME_SUFFIXES or not path.is_file():
        return [read_image(path)]
    array, dimension = _read_itk(path)
    if dimension == 2:
        return [_check_channels(array, path)]
    numpy_axis = 2 - slice_axis
    return [_check_channels(np.take(array, index, axis=numpy_axis), path) for index in range(array.shape[numpy_axis])]


def normalize_intensity(array: np.ndarray) -> np.ndarray:
    """Raw intensities → float32 in [-1, 1], the rule recorded in exported segmenters as "uint8-or-percentile".

    uint8: x / 127.5 - 1, so photographs keep their absolute brightness and colour (the domain signal alignment must
    match). Anything else (16-bit, CT Hounsfield units, MR, float): a per-image window from the 0.5th to the 99.5th
    percentile over all channels mapped to [-1, 1] and clipped, robust to metal or hot-pixel outliers; a constant
    image maps to 0. Non-finite values count as the window's low end.
    """
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    values = array.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.float32)
    low, high = np.percentile(values[finite], [0.5, 99.5])
    values = np.where(finite, values, low)
    if not high > low:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - low) / np.float32(high - low) * 2 - 1, -1, 1).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How an (H, W) image was put into the S x S working square, so a working-size mask can be mapped back.

    The image was resized to `resized_hw` (by `scale`, the same on both axes for letterbox and crop; stretch resizes
    each axis to S and records scale 1.0) and its top-left corner placed at `offset_yx` in the square: non-negative
    for letterbox (padding), negative for crop (the overhang cut off).
    """

    original_hw: tuple[int, int]
    scale: float
    offset_yx: tuple[int, int]
    resized_hw: tuple[int, int]
    mode: str


def letterbox_geometry(height: int, width: int, size_px: int, mode: str = "letterbox") -> Letterbox:
    """The geometry `prepare_image` uses for an (height, width) image; also for masks, so the two always agree."""
    choose("resize mode", mode, RESIZE_MODES)
    if size_px < 1 or height < 1 or width < 1:
        raise AlignFlowError(f"cannot resize a {width}x{height} image to {size_px}x{size_px}")
    if mode == "stretch":
        return Letterbox((height, width), 1.0, (0, 0), (size_px, size_px), mode)
    scale = size_px / (max(height, width) if mode == "letterbox" else min(height, width))
    resized = (max(1, round(height * scale)), max(1, round(width * scale)))
    offset = ((size_px - resized[0]) // 2, (size_px - resized[1]) // 2)
    return Letterbox((height, width), scale, offset, resized, mode)


def _resize(plane: np.ndarray, hw: tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """(h, w) float plane → (hw) float32. PIL's bilinear filter widens its support when shrinking: antialiased."""
    if plane.shape == hw:
        return plane.astype(np.float32, copy=False)
    picture = Image.fromarray(np.ascontiguousarray(plane, np.float32), mode="F")
    return np.asarray(picture.resize((hw[1], hw[0]), resample), np.float32)


def _place(planes: list[np.ndarray], box: Letterbox, size_px: int, fill: float) -> np.ndarray:
    """Resized planes (h, w) → (C, S, S): padded with `fill` (letterbox) or centre-cropped (crop)."""
    out = np.full((len(planes), size_px, size_px), fill, np.float32)
    (oy, ox), (h, w) = box.offset_yx, box.resized_hw
    src_y, src_x, dst_y, dst_x = max(0, -oy), max(0, -ox), max(0, oy), max(0, ox)
    rows, cols = min(h - src_y, size_px - dst_y), min(w - src_x, size_px - dst_x)
    for index, plane in enumerate(planes):
        out[index, dst_y:dst_y + rows, dst_x:dst_x + cols] = plane[src_y:src_y + rows, src_x:src_x + cols]
    return out


def prepare_image(array: np.ndarray, size_px: int, channels: int, resize_mode: str = "letterbox"
                  ) -> tuple[np.ndarray, Letterbox]:
    """(H, W[, C]) raw image → ((channels, S, S) float32 in [-1, 1], its geometry).

    Intensities by `normalize_intensity`; grey → RGB repeats the channel, RGB → grey takes BT.601 luminance. Resizing
    is bilinear and antialiased; letterbox padding is black (-1).
    """
    if channels not in (1, 3):
        raise AlignFlowError(f"channels must be 1 (grey) or 3 (RGB), not {channels!r}")
    array = _as_hwc(np.asarray(array))
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise AlignFlowError(f"expected an (H, W[, C]) image with 1, 3 or 4 channels, got shape {array.shape}")
    values = normalize_intensity(array[..., :3])
    if channels == 1 and values.shape[2] == 3:
        values = (values @ _LUMINANCE)[..., None]
    elif channels == 3 and values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    box = letterbox_geometry(values.shape[0], values.shape[1], size_px, resize_mode)
    planes = [_resize(values[..., c], box.resized_hw) for c in range(channels)]
    return np.clip(_place(planes, box, size_px, -1.0), -1, 1), box


def _level_list(values: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit].tolist())
    return shown + (", ..." if len(values) > limit else "")


def binarize_mask(array: np.ndarray, path: Path | None = None) -> np.ndarray:
    """(H, W[, C]) mask → (H, W) bool. Colour masks use the maximum over channels first.

    - One level: all background if it is 0, else all foreground; two levels: the higher one is foreground.
    - Near-binary (lossy-compression or resampling noise: no grey level between the two extremes holds more than 1 %
      of the pixels, and at least 90 % lie within 20 % of the range from either extreme): thresholded at the midpoint
      of min and max, with a logged warning naming the file.
    - Otherwise (e.g. labels 0, 1, 2 each well populated, or a grey-scale picture): an error, since masks are binary.

    Raises:
        InputDataError: the mask has three or more real labels or is not binary at all.
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.dtype == bool:
        return array.copy()
    values, counts = np.unique(array, return_counts=True)
    if len(values) == 1:
        return array != 0
    if len(values) == 2:
        return array == values[1]
    low, high = float(values[0]), float(values[-1])
    levels = values.astype(np.float64)
    band = 0.2 * (high - low)
    near_ends = (levels <= low + band) | (levels >= high - band)
    well_populated = counts > 0.01 * array.size
    middle_labels = values[~near_ends & well_populated]
    if len(middle_labels) == 0 and counts[near_ends].sum() >= 0.9 * array.size:
        log.warning("%s: mask is not exactly binary (%d grey levels, e.g. from JPEG compression); binarised at %g",
                    path if path is not None else "mask", len(values), (low + high) / 2)
        return array > (low + high) / 2
    if len(middle_labels):
        labels = values[well_populated]
        raise InputDataError(f"has {len(labels)} labels ({_level_list(labels)}); a binary mask is expected", path)
    middle_share = 100.0 * counts[~near_ends].sum() / array.size
    raise InputDataError(f"has {len(values)} grey levels with {middle_share:.0f}% of pixels between the extremes; "
                         "a binary mask is expected", path)


def prepare_mask(array: np.ndarray, size_px: int, resize_mode: str = "letterbox", path: Path | None = None
                 ) -> np.ndarray:
    """(H, W[, C]) mask → (1, S, S) float32 in {0, 1} with the same geometry as `prepare_image`.

    Binarised by `binarize_mask`, resized by bilinear (area-like when shrinking) averaging, thresholded at 0.5;
    letterbox padding is background.
    """
    binary = binarize_mask(array, path).astype(np.float32)
    box = letterbox_geometry(binary.shape[0], binary.shape[1], size_px, resize_mode)
    resized = _resize(binary, box.resized_hw)
    return (_place([resized], box, size_px, 0.0) >= 0.5).astype(np.float32)


def undo_letterbox(mask: np.ndarray, box: Letterbox) -> np.ndarray:
    """(S, S) (or (1, S, S)) working-size mask → (H, W) bool at the original size, nearest-neighbour; inverts the
    geometry of `prepare_image`. Pixels cropped away in crop mode come back as background."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    size = mask.shape[-1]
    (oy, ox), (h, w) = box.offset_yx, box.resized_hw
    canvas = np.zeros((h, w), np.float32)
    src_y, src_x, dst_y, dst_x = max(0, oy), max(0, ox), max(0, -oy), max(0, -ox)
    rows, cols = min(size - src_y, h - dst_y), min(size - src_x, w - dst_x)
    canvas[dst_y:dst_y + rows, dst_x:dst_x + cols] = mask[src_y:src_y + rows, src_x:src_x + cols]
    restored = _resize(canvas, box.original_hw, Image.NEAREST)
    return restored >= 0.5


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] (numpy or a CPU tensor) → (H, W, C) uint8, rounding to nearest."""
    values = np.asarray(image, dtype=np.float32)
    return np.clip((values + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def write_png(path: Path, array: np.ndarray) -> None:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 (or bool, written as 0/255) → PNG; fast compression for bulk writing."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise AlignFlowError(f"write_png expects (H, W) or (H, W, 3) uint8, got {array.dtype} {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)
