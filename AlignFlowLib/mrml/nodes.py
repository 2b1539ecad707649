"""Small MRML helpers: numpy arrays ↔ volume nodes, files → nodes, masks ↔ segments. Every function takes the scene.

Array layout follows MRML: a volume's voxels are (K, J, I[, C]) = (slice, row, column[, component]); a 2-D image is
one slice. Geometry lives in the node's IJK→RAS matrix and is copied, never recomputed, so spacing, origin and
direction survive every round trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def ensure_segmentation_converters() -> None:
    """Register the labelmap ↔ surface conversion rules. The Slicer application does this at startup; a bare
    slicer-core scene has none, and without them a segment cannot even be created empty."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def array_from_volume(volume) -> np.ndarray:
    """A copy of the voxels, (K, J, I) or (K, J, I, C) for vector volumes."""
    image = volume.GetImageData()
    if image is None:
        raise ValueError(f"volume {volume.GetName()!r} has no image data")
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return array.reshape(shape).copy()


def image_data_from_array(array: np.ndarray, components: int = 1) -> vtk.vtkImageData:
    """(K, J, I[, C]) array → vtkImageData (deep copy, so the array may be freed)."""
    array = np.ascontiguousarray(array)
    spatial = array.shape[:3]
    image = vtk.vtkImageData()
    image.SetDimensions(spatial[2], spatial[1], spatial[0])
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1, components), deep=True)
    scalars.SetNumberOfComponents(components)
    image.GetPointData().SetScalars(scalars)
    return image


def volume_from_array(scene, array: np.ndarray, name: str, geometry_from=None, rgb: bool | None = None):
    """Add a volume node for `array` ((K, J, I) scalar or (K, J, I, 3) RGB; (H, W[, 3]) is taken as one slice).

    Geometry is copied from `geometry_from` (a volume node); otherwise spacing 1 and the LPS-identity orientation
    Slicer gives a photograph (IJK→RAS = diag(−1, −1, 1)), which shows it upright in the axial view.
    """
    array = np.asarray(array)
    if rgb is None:
        rgb = array.ndim == 4 or (array.ndim == 3 and array.shape[-1] == 3 and geometry_from is None)
    if array.ndim == (3 if rgb else 2):
        array = array[None]
    node_class = "vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveImageData(image_data_from_array(array, array.shape[3] if rgb else 1))
    if geometry_from is not None:
        node.CopyOrientation(geometry_from)
    else:
        node.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    node.CreateDefaultDisplayNodes()
    return node


def read_volume(scene, path: Path, name: str | None = None):
    """Load an image file as a volume node: NRRD/NIfTI/MHA through MRML storage (geometry kept), 2-D photographs
    (PNG, JPG, TIFF, BMP) through PIL (MRML's readers here do not cover them)."""
    path = Path(path)
    name = name or file_stem(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as picture:
            if picture.mode not in ("L", "RGB", "I;16", "I", "F"):
                picture = picture.convert("RGB")
            return volume_from_array(scene, np.asarray(picture), name, rgb=picture.mode == "RGB")
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    vector = reader.GetNumberOfComponents() > 1
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode", name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise OSError(f"{path}: cannot be read as a volume")
    node.CreateDefaultDisplayNodes()
    return node


def write_volume(volume, path: Path, compress: bool = True) -> Path:
    """Write a volume node (scalar, vector or labelmap) with its geometry; the node's own storage is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(compress)
    if not storage.WriteData(volume):
        raise OSError(f"{path}: cannot write volume {volume.GetName()!r}")
    return path


def file_stem(path: Path) -> str:
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def add_segment(segmentation, name: str) -> str:
    """Add an empty segment named `name` (or reuse one with that name); returns its id."""
    ensure_segmentation_converters()
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    return segment_id or segmentation.GetSegmentation().AddEmptySegment("", name)


# A lesion found by a segmenter: SNOMED CT "Morphologically altered structure" / "Mass", as Slicer's own terminology
# (vtkSlicerTerminologyEntry's serialized form: context~category~type~type modifier~anatomic context~region~modifier).
LESION_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically "
                      "Altered Structure~SCT^4147007^Mass~^^~Anatomic codes - DICOM master list~^^~^^")
PREDICTION_COLOR = (0.95, 0.65, 0.1)


def unique_segment_name(segmentation, name: str) -> str:
    """`name`, or `name 2`, `name 3`, … — the first not used by a segment of `segmentation`."""
    content = segmentation.GetSegmentation()
    taken = {content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())}
    unique, index = name, 2
    while unique in taken:
        unique, index = f"{name} {index}", index + 1
    return unique


def add_new_segment(segmentation, name: str, color: tuple[float, float, float] = PREDICTION_COLOR,
                    terminology: str = LESION_TERMINOLOGY) -> str:
    """Always a new, empty segment (never an existing one reused), uniquely named, with colour and terminology, so
    writing a result can never overwrite a user's segment; returns its id."""
    ensure_segmentation_converters()
    content = segmentation.GetSegmentation()
    segment_id = content.AddEmptySegment("", unique_segment_name(segmentation, name), list(color))
    content.GetSegment(segment_id).SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    return segment_id


def segmentation_for(scene, reference, name: str):
    """A new segmentation node whose geometry follows `reference` (as the Segment Editor makes them)."""
    ensure_segmentation_converters()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    return segmentation


def write_mask_to_segment(segmentation, segment_id: str, mask: np.ndarray, reference) -> None:
    """Replace segment `segment_id` with `mask` ((K, J, I) or (H, W) bool, voxel-aligned with `reference`)."""
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()  # temporary, never added to the scene
    labelmap.SetAndObserveImageData(image_data_from_array(mask.astype(np.uint8)))
    labelmap.CopyOrientation(reference)
    oriented = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap)
    if segmentation.GetSegmentation().GetNumberOfSegments() == 0 or not segmentation.GetNodeReference(
            segmentation.GetReferenceImageGeometryReferenceRole()):
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(oriented, segmentation, segment_id, logic.MODE_REPLACE):
        raise RuntimeError(f"cannot write the mask into segment {segment_id!r}")


def mask_from_segments(scene, segmentation, reference, segment_ids: list[str] | None = None) -> np.ndarray:
    """Union of `segment_ids` (default: all) as a (K, J, I) bool array in `reference`'s voxel grid."""
    ids = vtk.vtkStringArray()
    for segment_id in segment_ids or [segmentation.GetSegmentation().GetNthSegmentID(i)
                                      for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]:
        ids.InsertNextValue(segment_id)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__alignflow_export")
    try:
        if ids.GetNumberOfValues() == 0:
            return np.zeros(array_from_volume(reference).shape[:3], bool)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation, ids, labelmap, reference):
            raise RuntimeError(f"cannot export segmentation {segmentation.GetName()!r}")
        return array_from_volume(labelmap) > 0
    finally:
        scene.RemoveNode(labelmap)


def labelmap_from_mask(scene, mask: np.ndarray, reference, name: str):
    """A (temporary) uint8 0/1 labelmap node voxel-aligned with `reference`."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    node.SetAndObserveImageData(image_data_from_array(np.asarray(mask).astype(np.uint8)))
    node.CopyOrientation(reference)
    return node


def subject_hierarchy_folder(scene, name: str, parent_item: int | None = None) -> int:
    """Create a subject-hierarchy folder item (under the scene, or `parent_item`)."""
    hierarchy = scene.GetSubjectHierarchyNode()
    return hierarchy.CreateFolderItem(hierarchy.GetSceneItemID() if parent_item is None else parent_item, name)


def move_to_folder(scene, node, folder_item: int) -> int:
    """Put `node` under `folder_item`. In Slicer a plugin has already made its item; a bare scene has none yet."""
    hierarchy = scene.GetSubjectHierarchyNode()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, folder_item)
        return item
    return hierarchy.CreateItem(folder_item, node)
