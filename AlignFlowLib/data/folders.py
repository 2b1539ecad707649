"""Pair folders (`images/` + `masks/`, matching stems) and reference folders (images only) as tensors."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..checkpoint import write_json_atomic
from ..config import DataConfig
from ..errors import InputDataError
from .io import file_stem, is_supported, prepare_image, prepare_mask, read_slices, to_uint8, write_png

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    images: torch.Tensor  # (N, C, S, S) float32 in [−1, 1]
    masks: torch.Tensor   # (N, 1, S, S) float32 in {0, 1}
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, S, S) float32 in [−1, 1]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def natural_key(text: str) -> list[Any]:
    """Sort key so that "2" < "10" and "case2" < "case10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _files_by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_supported(path) and not path.name.startswith("."):
            files.setdefault(file_stem(path), path)
    return files


def _require_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise InputDataError(f"{what} not found", folder)
    if not folder.is_dir():
        raise InputDataError(f"{what} is not a folder", folder)


def _select(files: dict[str, Path], ids: Sequence[str] | None, folder: Path) -> list[str]:
    if ids is None:
        return sorted(files, key=natural_key)
    missing = [i for i in ids if str(i) not in files]
    if missing:
        raise InputDataError(f"no image for id {missing[0]!r} ({len(missing)} requested ids missing)", folder)
    return [str(i) for i in ids]


def load_pairs(folder: Path, config: DataConfig, ids: Sequence[str] | None = None) -> PairSet:
    """Load a pair folder at the working size. Volumes become slices (empty-mask slices dropped unless asked).

    Raises:
        InputDataError: a missing or empty folder, an image without its mask, image/mask size mismatch,
            an unreadable file or a non-binary mask; the message names the file.
    """
    folder = Path(folder)
    _require_folder(folder, "source pair folder")
    images_dir, masks_dir = folder / "images", folder / "masks"
    _require_folder(images_dir, "images/ subfolder")
    _require_folder(masks_dir, "masks/ subfolder")
    images, masks = _files_by_stem(images_dir), _files_by_stem(masks_dir)
    if not images:
        raise InputDataError("no images found (PNG, JPG, TIFF, BMP, NRRD, NIfTI, MHA)", images_dir)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        log.warning("%s: %d masks without an image are ignored (e.g. %s)", masks_dir, len(orphans), orphans[0])
    size = config.image_size_px
    out_images, out_masks, names = [], [], []
    for stem in _select(images, ids, images_dir):
        if stem not in masks:
            raise InputDataError(f"no mask for this image (expected masks/{stem}.*)", images[stem])
        image_slices = read_slices(images[stem], config.slice_axis)
        mask_slices = read_slices(masks[stem], config.slice_axis)
        if len(image_slices) != len(mask_slices) or image_slices[0].shape[:2] != mask_slices[0].shape[:2]:
            ih, iw = image_slices[0].shape[:2]
            mh, mw = mask_slices[0].shape[:2]
            raise InputDataError(f"image is {iw}x{ih}x{len(image_slices)} but its mask {masks[stem].name} is "
                                 f"{mw}x{mh}x{len(mask_slices)}", images[stem])
        volume = len(image_slices) > 1
        for index, (image, mask) in enumerate(zip(image_slices, mask_slices)):
            working_mask = prepare_mask(mask, size, config.resize_mode, masks[stem])
            if volume and not config.keep_empty_slices and not working_mask.any():
                continue
            out_images.append(prepare_image(image, size, config.channels, config.resize_mode)[0])
            out_masks.append(working_mask)
            names.append(f"{stem}_s{index:03d}" if volume else stem)
    if not names:
        raise InputDataError("every slice has an empty mask; nothing to train on (see keep_empty_slices)", folder)
    return PairSet(torch.from_numpy(np.stack(out_images)), torch.from_numpy(np.stack(out_masks)), names)


def load_references(folder: Path, config: DataConfig, ids: Sequence[str] | None = None) -> ImageSet:
    """Load target reference images (no masks) from `folder/images/` or `folder/` itself; volumes give all slices."""
    folder = Path(folder)
    _require_folder(folder, "reference folder")
    source = folder / "images" if (folder / "images").is_dir() else folder
    files = _files_by_stem(source)
    if not files:
        raise InputDataError("no reference images found", folder)
    out, names = [], []
    for stem in _select(files, ids, source):
        slices = read_slices(files[stem], config.slice_axis)
        for index, image in enumerate(slices):
            out.append(prepare_image(image, config.image_size_px, config.channels, config.resize_mode)[0])
            names.append(f"{stem}_s{index:03d}" if len(slices) > 1 else stem)
    return ImageSet(torch.from_numpy(np.stack(out)), names)


def write_images(folder: Path, images: torch.Tensor, names: Sequence[str]) -> Path:
    """Write (N, C, S, S) images in [−1, 1] as PNGs `folder/<name>.png`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images.detach().cpu().numpy(), names):
        write_png(folder / f"{name}.png", to_uint8(image))
    return folder


def write_pairs(folder: Path, images: torch.Tensor, masks: torch.Tensor, names: Sequence[str],
                manifest: dict | None = None) -> Path:
    """Write a pair folder: images/<name>.png, masks/<name>.png (0/255) and, if given, manifest.json (last, so a
    folder with a manifest is complete)."""
    folder = Path(folder)
    write_images(folder / "images", images, names)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for mask, name in zip(masks.detach().cpu().numpy(), names):
        write_png(folder / "masks" / f"{name}.png", (mask[0] > 0.5).astype(np.uint8) * 255)
    if manifest is not None:
        write_json_atomic(folder / "manifest.json", manifest)
    return folder
