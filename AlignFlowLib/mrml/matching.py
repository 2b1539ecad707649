"""Which segmentation belongs to which volume, the way a user's scene really looks.

A segmentation drawn in the Segment Editor links to its source volume; one loaded with Add Data (`case.seg.nrrd` next
to `case.nrrd`) has no link, only the voxel grid it was drawn on (its reference geometry) and, for DICOM, a place in
the subject hierarchy. So a volume's segmentation is, in this order: the one linked to it; else the one drawn on its
exact voxel grid, narrowed to its subject-hierarchy study when several are. Two candidates at the same level are
reported, never silently resolved.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import vtk

import slicer

GEOMETRY_TOLERANCE = 1e-3  # mm, on matrix entries


class PairingError(ValueError):
    """A volume has no segmentation, or several equally good ones; the message names them."""


def _segmentations(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def _volume_grid(volume) -> tuple[np.ndarray, tuple[int, ...]] | None:
    image = volume.GetImageData()
    if image is None:
        return None
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return _as_array(matrix), tuple(image.GetExtent())


def _as_array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _segmentation_grid(segmentation) -> tuple[np.ndarray, tuple[int, ...], bool] | None:
    """The voxel grid the segmentation was made on: its stored reference geometry (whole, so exact), else its first
    labelmap's (possibly cropped to its content); the flag says which."""
    oriented = slicer.vtkOrientedImageData()
    text = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    exact = bool(text and slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, oriented))
    if not exact:
        content = segmentation.GetSegmentation()
        labelmap = None
        for index in range(content.GetNumberOfSegments()):
            labelmap = content.GetNthSegment(index).GetRepresentation(
                slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
            if labelmap is not None:
                break
        if labelmap is None:
            return None
        oriented = labelmap
    matrix = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(matrix)
    return _as_array(matrix), tuple(oriented.GetExtent()), exact


def same_grid(volume, segmentation) -> bool:
    """Whether `segmentation` was drawn on `volume`'s voxel grid, under the same transform: its stored reference
    geometry equals the volume's; without one, its labelmap has the same directions and spacing, an origin on the
    volume's grid and an extent inside the volume's (a labelmap may be cropped to its content)."""
    if volume.GetTransformNodeID() != segmentation.GetTransformNodeID():
        return False
    grids = _volume_grid(volume), _segmentation_grid(segmentation)
    if grids[0] is None or grids[1] is None:
        return False
    (volume_matrix, volume_extent), (seg_matrix, seg_extent, exact) = grids
    if exact:
        return volume_extent == seg_extent and np.allclose(volume_matrix, seg_matrix, atol=GEOMETRY_TOLERANCE)
    if not np.allclose(volume_matrix[:3, :3], seg_matrix[:3, :3], atol=GEOMETRY_TOLERANCE):
        return False
    # The segmentation's origin in the volume's voxel indices must be whole numbers.
    offset = np.linalg.solve(volume_matrix[:3, :3], seg_matrix[:3, 3] - volume_matrix[:3, 3])
    if not np.allclose(offset, np.round(offset), atol=GEOMETRY_TOLERANCE):
        return False
    shift = np.round(offset).astype(int)
    low = [seg_extent[2 * a] + shift[a] for a in range(3)]
    high = [seg_extent[2 * a + 1] + shift[a] for a in range(3)]
    return all(volume_extent[2 * a] <= low[a] and high[a] <= volume_extent[2 * a + 1] for a in range(3)
               if low[a] <= high[a])


def _study(scene, node) -> int:
    """The node's parent item in the subject hierarchy, 0 when it hangs directly under the scene."""
    hierarchy = scene.GetSubjectHierarchyNode()
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        return 0
    parent = hierarchy.GetItemParent(item)
    return 0 if parent == hierarchy.GetSceneItemID() else parent


def segmentation_for_volume(scene, volume, candidates: Sequence | None = None):
    """The one segmentation that belongs to `volume` (see the module docstring for the rule).

    Raises:
        PairingError: none, or several equally good candidates (named).
    """
    candidates = list(_segmentations(scene) if candidates is None else candidates)
    linked = [s for s in candidates
              if s.GetNodeReferenceID(s.GetReferenceImageGeometryReferenceRole()) == volume.GetID()]
    if len(linked) == 1:
        return linked[0]
    if len(linked) > 1:
        raise _ambiguous(volume, linked, "were all made with it as source volume")
    on_grid = [s for s in candidates if same_grid(volume, s)
               and not s.GetNodeReferenceID(s.GetReferenceImageGeometryReferenceRole())]
    if len(on_grid) > 1:
        study = _study(scene, volume)
        same_study = [s for s in on_grid if study and _study(scene, s) == study]
        if len(same_study) == 1:
            return same_study[0]
        raise _ambiguous(volume, same_study or on_grid, "lie on its voxel grid")
    if on_grid:
        return on_grid[0]
    raise PairingError(f"volume {volume.GetName()!r} has no segmentation: none was made with it as source volume "
                       "or lies on its voxel grid; segment it in the Segment Editor, or use a pair folder")


def _ambiguous(volume, segmentations: Sequence, why: str) -> PairingError:
    names = ", ".join(repr(s.GetName()) for s in segmentations)
    return PairingError(f"volume {volume.GetName()!r} has {len(segmentations)} segmentations that {why} ({names}); "
                        "delete or rename all but one, or choose the pairs explicitly")


def pair_volumes(scene, volumes: Sequence, segmentations: Sequence | None = None) -> list[tuple]:
    """(volume, segmentation) for each volume: `segmentations[i]` when given (explicit choice, None = automatic),
    else `segmentation_for_volume`. One segmentation may not serve two volumes."""
    pairs = []
    for index, volume in enumerate(volumes):
        chosen = segmentations[index] if segmentations is not None and index < len(segmentations) else None
        pairs.append((volume, chosen if chosen is not None else segmentation_for_volume(scene, volume)))
    used: dict[str, str] = {}
    for volume, segmentation in pairs:
        if segmentation.GetID() in used:
            raise PairingError(f"segmentation {segmentation.GetName()!r} was matched to both volume "
                               f"{used[segmentation.GetID()]!r} and volume {volume.GetName()!r}; choose the pairs "
                               "explicitly")
        used[segmentation.GetID()] = volume.GetName()
    return pairs


def segment_ids_by_name(pairs: Sequence[tuple], names: Sequence[str]) -> list[list[str]]:
    """The IDs of `names` in each pair's own segmentation (IDs differ between segmentations).

    Raises:
        PairingError: a name missing from a segmentation, naming both and the segments it does have.
    """
    ids: list[list[str]] = []
    for volume, segmentation in pairs:
        content = segmentation.GetSegmentation()
        found = []
        for name in names:
            segment_id = content.GetSegmentIdBySegmentName(name)
            if not segment_id:
                present = [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())]
                raise PairingError(f"segmentation {segmentation.GetName()!r} (of volume {volume.GetName()!r}) has "
                                   f"no segment named {name!r}; it has {', '.join(map(repr, present)) or 'none'}")
            found.append(segment_id)
        ids.append(found)
    return ids
