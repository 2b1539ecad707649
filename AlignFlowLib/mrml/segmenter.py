"""Exported segmenter → segments, Qt-free (the Segment Editor effect and the module's "Apply" call this).

The effect's path, every step here except the last: `PredictionJob` writes the source volume to a temporary file
and runs `alignflow segmenter predict` in a separate process (the GUI stays responsive, Cancel works), and
`mask_from_label_file` reads the result back; `segmentation_labelmap` puts it into the *segmentation's* coordinate
system through both nodes' parent transforms; `resample_to_geometry` moves it onto the editor's modifier grid (the
editor's intensity mask refuses any other grid); `show_preview` shows it before anything changes. The effect then
applies it with `modifySelectedSegmentByLabelmap`, which honours the editable area and intensity range and keeps the
segment's layer.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import vtk

import slicer

from ..predict import Segmenter, segment_volume, slice_axis  # noqa: F401  (re-exported)
from .nodes import (add_segment, array_from_volume, ensure_segmentation_converters, image_data_from_array,
                    write_mask_to_segment, write_volume)

PREVIEW_NAME = "AlignFlow preview"


def load_segmenter(model_folder: Path) -> Segmenter:
    """The library's loader (imports torch, so only here, on first use)."""
    from AlignFlowLib.segmenter.export import ExportedSegmenter

    return ExportedSegmenter.load(Path(model_folder))


def apply_segmenter(scene, volume_node, segmentation_node, segment_id: str | None,
                    exported_folder: Path | None = None, *, segmenter: Segmenter | None = None,
                    segment_name: str = "lesion") -> int:
    """Segment `volume_node` in-process with the exported segmenter in `exported_folder` (or a ready `segmenter`, for
    tests) and replace the content of `segment_id` (a new segment named `segment_name` when None/empty); other
    segments are untouched. The module's "Apply" uses this; the Segment Editor effect goes through `PredictionJob`.
    Returns the number of voxels filled.

    Raises:
        ValueError: neither an exported folder nor a segmenter, or a volume without voxels.
    """
    if segmenter is None:
        if exported_folder is None:
            raise ValueError("choose an exported segmenter folder (model.json beside the weights)")
        segmenter = load_segmenter(exported_folder)
    voxels = array_from_volume(volume_node)
    mask = segment_volume(segmenter, voxels, slice_axis(exported_folder))
    if not segment_id:
        segment_id = add_segment(segmentation_node, segment_name)
    write_mask_to_segment(segmentation_node, segment_id, mask, volume_node)
    return int(mask.sum())


# The Segment Editor effect's path: a predicted label file → an oriented labelmap where the segmentation lives.

def predict_args(model_folder: Path, volume_file: Path, out_file: Path, device: str = "auto") -> list[str]:
    """The CLI arguments of one prediction (the `ProcessRunner` adds `--progress jsonl`)."""
    return ["segmenter", "predict", "--model", str(model_folder), "--volume", str(volume_file), "--out",
            str(out_file), "--device", device]


def mask_from_label_file(path: Path, volume_node) -> np.ndarray:
    """A predicted 0/1 label file → (K, J, I) bool on `volume_node`'s voxel grid.

    Raises:
        OSError: the file does not read as a volume.
        ValueError: its voxel grid is not the volume's.
    """
    import SimpleITK as sitk

    try:
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError as error:
        raise OSError(f"{path}: cannot be read as a volume") from error
    shape = array_from_volume(volume_node).shape[:3]
    if label.ndim == 2:
        label = label[None]
    if label.shape != shape:
        raise ValueError(f"{path}: prediction of {label.shape} voxels does not match volume "
                         f"{volume_node.GetName()!r} ({shape})")
    return label > 0


def segmentation_labelmap(scene, mask: np.ndarray, volume_node, segmentation_node):
    """(K, J, I) mask voxel-aligned with `volume_node` → vtkOrientedImageData (uint8 0/1) in the coordinate system of
    `segmentation_node`, through the volume's and the segmentation's parent transforms, so the labelmap lands where the
    volume's voxels are. A linear transform between the two changes only the geometry (exact); a warping one
    resamples the voxels (nearest neighbour), as Slicer does for any volume shown in a segmentation."""
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    image = image_data_from_array(mask.astype(np.uint8))
    source, target = volume_node.GetParentTransformNode(), segmentation_node.GetParentTransformNode()
    between = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(source, target, between)
    if source is target or slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(between):
        # CreateOrientedImageDataFromVolumeNode would resample here: the composed transform (with an inverse) is not
        # recognised as linear there, so the matrix is applied directly instead.
        ijk_to_segmentation = vtk.vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(ijk_to_segmentation)
        if source is not target:
            volume_to_segmentation = vtk.vtkMatrix4x4()
            slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(source, target, volume_to_segmentation)
            vtk.vtkMatrix4x4.Multiply4x4(volume_to_segmentation, ijk_to_segmentation, ijk_to_segmentation)
        oriented = slicer.vtkOrientedImageData()
        oriented.DeepCopy(image)
        oriented.SetGeometryFromImageToWorldMatrix(ijk_to_segmentation)
        return oriented
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    labelmap.SetName(scene.GenerateUniqueName("__alignflow_prediction"))
    labelmap.SetHideFromEditors(True)
    scene.AddNode(labelmap)  # in the scene only so that it can sit under the volume's parent transform
    try:
        labelmap.SetAndObserveImageData(image)
        labelmap.CopyOrientation(volume_node)
        labelmap.SetAndObserveTransformNodeID(source.GetID())
        oriented = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap, target)
        if oriented is None:
            raise RuntimeError(f"cannot make a labelmap from the prediction for {volume_node.GetName()!r}")
        return oriented
    finally:
        scene.RemoveNode(labelmap)


def reference_geometry(segmentation_node, volume_node=None):
    """The segmentation's reference grid (in its own coordinates) as an empty vtkOrientedImageData; set from
    `volume_node` first when the segmentation has none yet (as the Segment Editor does)."""
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry = segmentation_node.GetSegmentation().GetConversionParameter(parameter)
    if not geometry and volume_node is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        geometry = segmentation_node.GetSegmentation().GetConversionParameter(parameter)
    if not geometry:
        raise ValueError(f"segmentation {segmentation_node.GetName()!r} has no reference geometry")
    image = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, image, False)
    return image


def resample_to_geometry(labelmap, reference):
    """`labelmap` on `reference`'s grid (nearest neighbour), uint8 0/1. The editor's modifier labelmap must have the
    source volume's aligned grid, or its intensity mask refuses the edit; both are the segmentation's reference grid."""
    resampled = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, reference, resampled, False):
        raise RuntimeError("cannot resample the prediction onto the segmentation's grid")
    return resampled


def modifier_labelmap(scene, mask: np.ndarray, volume_node, segmentation_node, reference=None):
    """The labelmap the effect hands to `modifySelectedSegmentByLabelmap`: the prediction in the segmentation's
    coordinates, on `reference`'s grid (the editor's default modifier labelmap; the segmentation's reference grid
    when None)."""
    labelmap = segmentation_labelmap(scene, mask, volume_node, segmentation_node)
    reference = reference if reference is not None else reference_geometry(segmentation_node, volume_node)
    return resample_to_geometry(labelmap, reference)


def show_preview(scene, segmentation_node, labelmap, color: Sequence[float] = (0.9, 0.8, 0.1), opacity: float = 0.6):
    """A temporary segmentation node showing `labelmap` (in `segmentation_node`'s coordinates) under the same parent
    transform, so the user sees the prediction before anything in the real segmentation changes."""
    ensure_segmentation_converters()
    preview = slicer.vtkMRMLSegmentationNode()
    preview.SetName(scene.GenerateUniqueName(PREVIEW_NAME))
    preview.SetHideFromEditors(True)
    preview.SetSaveWithScene(False)
    scene.AddNode(preview)
    preview.CreateDefaultDisplayNodes()
    transform = segmentation_node.GetParentTransformNode()
    preview.SetAndObserveTransformNodeID(transform.GetID() if transform else None)
    segment_id = preview.GetSegmentation().AddEmptySegment("prediction", PREVIEW_NAME, list(color[:3]))
    if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, preview, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE):
        scene.RemoveNode(preview)
        raise RuntimeError("cannot show the prediction")
    display = preview.GetDisplayNode()
    if display is not None:
        display.SetOpacity(opacity)
        display.SetVisibility2DOutline(True)
    return preview


def remove_preview(scene, preview) -> None:
    """Remove a node with its display nodes (a preview made by `show_preview`, a node the web page added)."""
    if preview is None or preview.GetScene() is None:
        return
    for index in reversed(range(preview.GetNumberOfDisplayNodes())):
        display = preview.GetNthDisplayNode(index)
        if display is not None:
            scene.RemoveNode(display)
    scene.RemoveNode(preview)


class PredictionJob:
    """One `alignflow segmenter predict` run for a volume node, in a separate process; Qt-free and poll-based, so
    the effect drives it from a QTimer and tests drive it with `wait`.

        job = PredictionJob(scene, volume, model_folder).start()
        job.poll()  # events; job.progress = (step, total)
        job.cancel()
        job.finished, job.succeeded, job.error_message, job.mask()
    """

    def __init__(self, scene, volume_node, model_folder: Path, device: str = "auto",
                 runner_factory: Callable[[list[str]], Any] | None = None):
        self.scene, self.volume_node, self.model_folder, self.device = scene, volume_node, Path(model_folder), device
        self._runner_factory = runner_factory
        self.runner: Any = None
        self.folder: Path | None = None
        self.progress: tuple[int, int] = (0, 0)

    @property
    def out_file(self) -> Path:
        if self.folder is None:
            raise RuntimeError("call start() first")
        return self.folder / "prediction.nrrd"

    def start(self) -> PredictionJob:
        """Write the volume (with its geometry, uncompressed for speed) to a temporary folder and start the CLI."""
        if self.runner is not None:
            raise RuntimeError("this job was already started")
        self.folder = Path(tempfile.mkdtemp(prefix="alignflow-predict-"))
        try:
            volume_file = write_volume(self.volume_node, self.folder / "volume.nrrd", compress=False)
            args = predict_args(self.model_folder, volume_file, self.out_file, self.device)
            if self._runner_factory is not None:
                self.runner = self._runner_factory(args)
            else:
                from AlignFlowLib.runner import ProcessRunner

                self.runner = ProcessRunner(args).start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def poll(self) -> list[dict]:
        """New events from the process; progress events update `progress`."""
        events = self.runner.poll()
        for event in events:
            self._record(event)
        return events

    def wait(self, timeout_s: float | None = None) -> dict | None:
        """Block until the process ends (tests, headless use); returns the terminal event, None on timeout."""
        return self.runner.wait(timeout_s, on_event=self._record)

    def _record(self, event: dict) -> None:
        if event.get("event") == "progress":
            self.progress = (int(event.get("step", 0)), int(event.get("total", 0)))

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    @property
    def running(self) -> bool:
        return self.runner is not None and not self.runner.finished

    @property
    def finished(self) -> bool:
        return self.runner is not None and self.runner.finished

    @property
    def cancelled(self) -> bool:
        return self.runner is not None and bool(self.runner.cancelled)

    @property
    def succeeded(self) -> bool:
        return self.finished and not self.cancelled and self.runner.returncode == 0 and self.out_file.is_file()

    @property
    def error_message(self) -> str | None:
        """The CLI's one-line error (or a crash's stderr tail); None while running, after success or a cancel."""
        if not self.finished or self.succeeded or self.cancelled:
            return None
        return self.runner.error_message or f"the prediction did not produce {self.out_file.name}"

    def mask(self) -> np.ndarray:
        """The prediction as (K, J, I) bool on the volume's grid (after success)."""
        if not self.succeeded:
            raise RuntimeError(self.error_message or "the prediction has not finished")
        return mask_from_label_file(self.out_file, self.volume_node)

    def cleanup(self) -> None:
        """Delete the temporary folder (the volume copy and the prediction)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
