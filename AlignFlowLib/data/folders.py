"""Pair folders (`images/` + `masks/`, matching file stems) and reference folders (images only) as tensors.

A pair folder may mix formats (image `3.jpg` with mask `3.png`, or `ct.nii.gz` with `ct.nrrd`); volumes are used as
2-D slices named `<stem>_s<index:03d>`. Names are sorted naturally ("2" before "10").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import write_json_atomic
from ..config import DataConfig
from ..errors import AlignFlowError, InputDataError
from .io import file_stem, is_supported, prepare_image, prepare_mask, read_slices, write_png

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Image–mask pairs at the working size."""

    images: torch.Tensor  # (N, C, S, S) float32 in [-1, 1]
    masks: torch.Tensor   # (N, 1, S, S) float32 in {0, 1}
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class ImageSet:
    """Images without masks (target references) at the working size."""

    images: torch.Tensor  # (N, C, S, S) float32 in [-1, 1]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def natural_key(text: str) -> list[Any]:
    """Sort key for human numbering: "2" < "10", "case2" < "case10"; case-insensitive otherwise."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]


def _require_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise InputDataError(f"{what} not found", folder)
    if not folder.is_dir():
        raise InputDataError(f"{what} is not a folder", folder)


def _files_by_stem(folder: Path) -> dict[str, Path]:
    """Supported, non-hidden files of `folder` keyed by stem; two files with one stem are ambiguous, so an error."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_supported(path):
            continue
        stem = file_stem(path)
        if stem in files:
            raise InputDataError(f"{files[stem].name} and {path.name} have the same name; keep one", folder)
        files[stem] = path
    return files


def _select(files: dict[str, Path], ids: Sequence[str] | None, folder: Path) -> list[str]:
    """All stems in natural order, or exactly `ids` (in their order) with the first missing one named."""
    if ids is None:
        return sorted(files, key=natural_key)
    if isinstance(ids, (str, bytes)):
        raise AlignFlowError("ids must be a list of file stems, not a single string")
    wanted = [str(i) for i in ids]
    missing = [i for i in wanted if i not in files]
    if missing:
        raise InputDataError(f"no image for id {missing[0]!r} ({len(missing)} of {len(wanted)} requested ids "
                             "missing)", folder)
    return wanted


def _size_text(slices: list[np.ndarray]) -> str:
    height, width = slices[0].shape[:2]
    return f"{width}x{height}" + (f"x{len(slices)}" if len(slices) > 1 else "")


def require_trainable(pairs: PairSet, folder: Path, extra: PairSet | None = None) -> None:
    """Refuse, before minutes of training, data nothing can be learnt from (with `extra`, e.g. synthetic pairs, the
    two sets together).

    Raises:
        InputDataError: no mask has any foreground, or all images are the same one.
    """
    masks = pairs.masks if extra is None else torch.cat([pairs.masks, extra.masks])
    images = pairs.images if extra is None else torch.cat([pairs.images, extra.images])
    if not bool(masks.any()):
        raise InputDataError(f"no mask of the {len(masks)} pairs has any foreground; there is nothing to learn to "
                             "segment", folder)
    if len(images) < 2 or bool((images == images[:1]).flatten(1).all(dim=1).all()):
        raise InputDataError(f"holds {'one image' if len(images) < 2 else 'only copies of one image'}; at least two "
                             "different images are needed to learn anything", folder)


def load_pairs(folder: Path, config: DataConfig, ids: Sequence[str] | None = None) -> PairSet:
    """Load a pair folder at `config.image_size_px`, `config.channels`, `config.resize_mode`.

    Volumes are sliced along `config.slice_axis`; their slices with an empty mask are skipped unless
    `config.keep_empty_slices` (a 2-D image with an empty mask is always kept: it is a real negative example).
    Masks without an image are ignored with a warning.

    Raises:
        InputDataError: the folder, `images/` or `masks/` is missing; no images; an image without its mask; image and
            mask sizes differ; an unreadable file; a non-binary mask; an unknown id; every slice empty.
    """
    folder = Path(folder)
    _require_folder(folder, "pair folder")
    images_dir, masks_dir = folder / "images", folder / "masks"
    _require_folder(images_dir, "images/ subfolder")
    _require_folder(masks_dir, "masks/ subfolder")
    images, masks = _files_by_stem(images_dir), _files_by_stem(masks_dir)
    if not images:
        raise InputDataError("no images found (PNG, JPG, TIFF, BMP, NRRD, NIfTI, MHA)", images_dir)
    orphans = sorted(set(masks) - set(images), key=natural_key)
    if orphans:
        log.warning("%s: %d mask(s) without an image are ignored (e.g. %s)", masks_dir, len(orphans),
                    masks[orphans[0]].name)
    size, mode = config.image_size_px, config.resize_mode
    out_images, out_masks, names = [], [], []
    for stem in _select(images, ids, images_dir):
        image_path = images[stem]
        if stem not in masks:
            raise InputDataError(f"no mask for this image (expected masks/{stem}.*)", image_path)
        mask_path = masks[stem]
        image_slices = read_slices(image_path, config.slice_axis)
        mask_slices = read_slices(mask_path, config.slice_axis)
        if len(image_slices) != len(mask_slices) or image_slices[0].shape[:2] != mask_slices[0].shape[:2]:
            raise InputDataError(f"image is {_size_text(image_slices)} but its mask masks/{mask_path.name} is "
                                 f"{_size_text(mask_slices)}", image_path)
        volume = len(image_slices) > 1
        for index, (image, mask) in enumerate(zip(image_slices, mask_slices)):
            working_mask = prepare_mask(mask, size, mode, mask_path)
            if volume and not config.keep_empty_slices and not working_mask.any():
                continue
            out_images.append(prepare_image(image, size, config.channels, mode)[0])
            out_masks.append(working_mask)
            names.append(f"{stem}_s{index:03d}" if volume else stem)
    if not names:
        raise InputDataError("every slice has an empty mask; nothing to train on (see keep_empty_slices)", folder)
    return PairSet(torch.from_numpy(np.stack(out_images)), torch.from_numpy(np.stack(out_masks)), names)


def load_references(folder: Path, config: DataConfig, ids: Sequence[str] | None = None) -> ImageSet:
    """Load target reference images (no masks) from `folder/images/` if present, else from `folder` itself.
    Volumes give all their slices (`<stem>_s<index:03d>`).

    Raises:
        InputDataError: the folder is missing, holds no images, or a file is unreadable; an unknown id.
    """
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


def _check_names(count: int, names: Sequence[str]) -> list[str]:
    names = [str(name) for name in names]
    if len(names) != count:
        raise AlignFlowError(f"{count} images but {len(names)} names")
    bad = [name for name in names if not name or "/" in name or "\\" in name or name in (".", "..")]
    if bad:
        raise AlignFlowError(f"{bad[0]!r} cannot be used as a file name")
    if len(set(names)) != len(names):
        raise AlignFlowError("names must be unique: two images would overwrite each other")
    return names


def write_images(folder: Path, images: torch.Tensor, names: Sequence[str]) -> Path:
    """Write (N, C, S, S) images in [-1, 1] as `folder/<name>.png` (RGB for C = 3, grey for C = 1); returns folder."""
    folder = Path(folder)
    names = _check_names(len(images), names)
    folder.mkdir(parents=True, exist_ok=True)
    values = images.detach().to("cpu", torch.float32).numpy()  # (N, C, S, S)
    pixels = np.clip((values + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for array, name in zip(pixels, names):
        write_png(folder / f"{name}.png", array)
    return folder


def write_pairs(folder: Path, images: torch.Tensor, masks: torch.Tensor, names: Sequence[str],
                manifest: dict | None = None) -> Path:
    """Write a pair folder: `images/<name>.png` (uint8 RGB or grey), `masks/<name>.png` (0/255) and, if given,
    `manifest.json` (written last and atomically, so a folder with a manifest is complete). Returns `folder`.

    images: (N, C, S, S) in [-1, 1]; masks: (N, 1, S, S), foreground where > 0.5.
    """
    folder = Path(folder)
    if len(masks) != len(images):
        raise AlignFlowError(f"{len(images)} images but {len(masks)} masks")
    write_images(folder / "images", images, names)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    binary = (masks.detach().to("cpu")[:, 0] > 0.5).numpy().astype(np.uint8) * 255
    for mask, name in zip(binary, names):
        write_png(folder / "masks" / f"{name}.png", mask)
    if manifest is not None:
        write_json_atomic(folder / "manifest.json", manifest)
    return folder
