"""Pairs and results shown in views, on an explicit scene: what the browser page (`alignflow serve`) shows.

Pairs are shown the way the Slicer module shows them: the image as a volume, the mask as a segment of a
segmentation on the image's grid. Each node is shown in one view only, so three views can hold three different
pairs of one scene side by side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

import slicer

from .nodes import add_new_segment, read_volume, segmentation_for, write_mask_to_segment
from .segmenter import remove_preview

STAGE1_COLOUR = (0.95, 0.55, 0.1)
ALIGNED_COLOUR = (0.1, 0.85, 0.25)
PREDICTION_COLOUR = (0.1, 0.85, 0.25)


def read_mask(path: Path) -> np.ndarray:
    """A 0/255 (or 0/1) mask PNG → (1, H, W) bool, the layout of a one-slice volume."""
    from PIL import Image

    with Image.open(path) as picture:
        return (np.asarray(picture.convert("L")) > 127)[None]


def show_in_view(node, *view_node_ids: str) -> None:
    """Limit every display node of `node` to these views (an empty list would mean "all views", and a result would
    then spill over the pairs that other views show at the same place)."""
    for index in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(index)
        if display is not None:
            display.RemoveAllViewNodeIDs()
            for view_node_id in view_node_ids:
                display.AddViewNodeID(view_node_id)


def load_pair(scene, image: Path, mask: Path | None, name: str, colour: Sequence[float]) -> list:
    """Image → volume, mask → one filled segment on the image's grid; returns the nodes added."""
    volume = read_volume(scene, Path(image), name)
    if mask is None:
        return [volume]
    segmentation = segmentation_for(scene, volume, f"{name} mask")
    segment_id = add_new_segment(segmentation, "mask", tuple(colour))
    write_mask_to_segment(segmentation, segment_id, read_mask(Path(mask)), volume)
    style_overlay(segmentation)
    return [volume, segmentation]


def style_overlay(segmentation, fill_opacity: float = 0.4) -> None:
    """A see-through fill with a solid outline, so the generated texture under the mask stays visible."""
    display = segmentation.GetDisplayNode()
    if display is not None:
        display.SetOpacity2DFill(fill_opacity)
        display.SetOpacity2DOutline(1.0)


def set_overlays_visible(nodes: Sequence, visible: bool) -> None:
    for node in nodes:
        if node is not None and node.IsA("vtkMRMLSegmentationNode") and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(visible)


def remove_nodes(scene, nodes: Sequence) -> None:
    """Remove nodes the page added (with their display nodes); nodes already gone are skipped."""
    for node in nodes:
        if node is not None and scene.GetNodeByID(node.GetID()) is not None:
            remove_preview(scene, node)


def _dicom_series_to_nrrd(folder: Path, work: Path) -> Path:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise OSError(f"{folder}: holds no DICOM series")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    out = work / "dicom.nrrd"
    sitk.WriteImage(reader.Execute(), str(out))
    return out


def load_server_volume(scene, path: Path):
    """A volume file (NRRD, NIfTI, MHA, 2-D photo) or a DICOM folder (its first series) → a volume node."""
    path = Path(path)
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="alignflow-dicom-") as work:
            return read_volume(scene, _dicom_series_to_nrrd(path, Path(work)), path.name)
    return read_volume(scene, path)


def segmentation_from_mask(scene, volume, mask: np.ndarray, name: str = "AlignFlow segmentation"):
    """A new segmentation on `volume`'s grid holding `mask` as one segment, with a 3-D surface for the 3-D view."""
    segmentation = segmentation_for(scene, volume, name)
    segment_id = add_new_segment(segmentation, "lesion", PREDICTION_COLOUR)
    write_mask_to_segment(segmentation, segment_id, mask, volume)
    segmentation.CreateClosedSurfaceRepresentation()
    style_overlay(segmentation)
    return segmentation


def segmentation_file_bytes(segmentation) -> bytes:
    """The segmentation as a `.seg.nrrd` file's bytes (what Slicer itself writes and reads)."""
    with tempfile.TemporaryDirectory(prefix="alignflow-seg-") as work:
        path = Path(work) / "segmentation.seg.nrrd"
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(segmentation):
            raise OSError(f"cannot write segmentation {segmentation.GetName()!r} as .seg.nrrd")
        return path.read_bytes()


def mask_voxels(segmentation, volume) -> np.ndarray:
    """The segmentation's first segment as a (K, J, I) bool array on `volume`'s grid (tests, summaries)."""
    from .nodes import mask_from_segments

    return mask_from_segments(segmentation.GetScene(), segmentation, volume)
