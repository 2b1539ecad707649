"""Scene ↔ disk: selected nodes become pair/reference folders for the CLI; generated pairs come back as nodes.

A pair folder is `images/<name>.nrrd` + `masks/<name>.nrrd` (uint8 0/1, same voxel grid as the image); NRRD keeps
spacing, origin and direction, so the library's readers see exactly what the scene holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import replace_folder
from .nodes import (add_segment, array_from_volume, labelmap_from_mask, mask_from_segments, move_to_folder,
                    read_volume, segmentation_for, subject_hierarchy_folder, write_mask_to_segment, write_volume)

GENERATED_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nrrd", ".nii", ".nii.gz", ".mha")


@dataclass
class LoadedPair:
    """One generated pair in the scene."""

    name: str
    volume: object        # vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
    segmentation: object  # vtkMRMLSegmentationNode, one segment


def safe_stem(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a node name ("CT chest #2" → "CT_chest_2")."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
    unique, index = stem, 2
    while unique.lower() in taken:
        unique, index = f"{stem}_{index}", index + 1
    taken.add(unique.lower())
    return unique


def export_pairs(scene, pairs: Sequence[tuple[object, object]], folder: Path,
                 segment_ids: Sequence[str] | None = None,
                 per_pair_segment_ids: Sequence[Sequence[str] | None] | None = None) -> Path:
    """Write (volume, segmentation) pairs as a pair folder (images/<name>.nrrd + masks/<name>.nrrd) the CLI reads,
    replacing whatever the folder held. The mask is the union of the pair's `per_pair_segment_ids[i]` (or
    `segment_ids` for every pair; default: all segments), resampled into the volume's voxel grid; binary, because the
    library trains one foreground label.

    Raises:
        ValueError: no pairs, or a pair without a volume or segmentation.
    """
    if not pairs:
        raise ValueError("no (volume, segmentation) pairs selected")
    if any(volume is None or segmentation is None for volume, segmentation in pairs):
        raise ValueError("each source pair needs a volume and a segmentation")

    def write(target: Path) -> None:
        taken: set[str] = set()
        for index, (volume, segmentation) in enumerate(pairs):
            stem = safe_stem(volume.GetName(), taken)
            write_volume(volume, target / "images" / f"{stem}.nrrd")
            ids = per_pair_segment_ids[index] if per_pair_segment_ids is not None else segment_ids
            mask = mask_from_segments(scene, segmentation, volume, list(ids) if ids else None)
            labelmap = labelmap_from_mask(scene, mask, volume, f"__alignflow_{stem}_mask")
            try:
                write_volume(labelmap, target / "masks" / f"{stem}.nrrd")
            finally:
                scene.RemoveNode(labelmap)

    return replace_folder(folder, write)


def export_references(scene, volumes: Sequence[object], folder: Path) -> Path:
    """Write target reference volumes (images only, no masks needed) as `<folder>/<name>.nrrd`, geometry kept,
    replacing whatever the folder held. `scene` is taken for the bridge's uniform signature."""
    if not volumes:
        raise ValueError("no reference volumes selected")

    def write(target: Path) -> None:
        taken: set[str] = set()
        for volume in volumes:
            write_volume(volume, target / f"{safe_stem(volume.GetName(), taken)}.nrrd")

    return replace_folder(folder, write)


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _files_by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            name = path.name.lower()
            if path.is_file() and not name.startswith(".") and name.endswith(GENERATED_SUFFIXES):
                files.setdefault(path.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem, path)
    return files


def read_manifest(folder: Path) -> dict:
    """`manifest.json` of a generated pair folder, or {} when there is none."""
    path = Path(folder) / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_pair_folder(scene, folder: Path, folder_name: str | None = None, max_pairs: int | None = None,
                     segment_name: str | None = None) -> tuple[int, list[LoadedPair]]:
    """Load a (generated) pair folder into a new subject-hierarchy folder: per pair a volume and a segmentation
    whose mask is drawn as an outline over the image. Returns (folder item id, pairs).

    Raises:
        FileNotFoundError: no images/ with masks/ of matching stems in `folder`.
    """
    folder = Path(folder)
    images, masks = _files_by_stem(folder / "images"), _files_by_stem(folder / "masks")
    stems = sorted((s for s in images if s in masks), key=_natural_key)
    if not stems:
        raise FileNotFoundError(f"{folder}: no image/mask pairs (images/ and masks/ with matching names)")
    manifest = read_manifest(folder)
    labels = manifest.get("labels") or ["lesion"]
    segment_name = segment_name or str(labels[0])
    item = subject_hierarchy_folder(scene, folder_name or f"AlignFlow {folder.name}")
    loaded: list[LoadedPair] = []
    for stem in stems[:max_pairs]:
        volume = read_volume(scene, images[stem], stem)
        mask_node = read_volume(scene, masks[stem], f"__alignflow_{stem}_mask")
        try:
            mask = array_from_volume(mask_node)
        finally:
            scene.RemoveNode(mask_node)
        if mask.ndim == 4:
            mask = mask.max(axis=-1)
        segmentation = segmentation_for(scene, volume, f"{stem} mask")
        segment_id = add_segment(segmentation, segment_name)
        write_mask_to_segment(segmentation, segment_id, mask > (mask.max() / 2 if mask.max() > 1 else 0), volume)
        show_as_outline(segmentation)
        move_to_folder(scene, volume, item)
        move_to_folder(scene, segmentation, item)
        loaded.append(LoadedPair(stem, volume, segmentation))
    return item, loaded


def load_generated_pairs(scene, folder: Path, sh_folder_name: str,
                         max_pairs: int | None = None) -> list[tuple[object, object]]:
    """A generated pair folder (images/*.png RGB or grey, masks/*.png 0/255, manifest.json) → (volume,
    segmentation) node pairs under a new subject-hierarchy folder `sh_folder_name`, masks drawn as outlines so
    the synthetic image stays readable underneath."""
    _, loaded = load_pair_folder(scene, folder, sh_folder_name, max_pairs)
    return [(pair.volume, pair.segmentation) for pair in loaded]


def show_as_outline(segmentation) -> None:
    """Mask as an outline in slice views, so the generated image stays visible underneath."""
    display = segmentation.GetDisplayNode()
    if display is not None:
        display.SetVisibility2DFill(False)
        display.SetVisibility2DOutline(True)
        display.SetSliceIntersectionThickness(2)


def mask_array(scene, segmentation, reference, segment_ids: Sequence[str] | None = None) -> np.ndarray:
    """Union of segments as a bool array in `reference`'s grid (re-exported for tests and the logic)."""
    return mask_from_segments(scene, segmentation, reference, list(segment_ids) if segment_ids else None)
