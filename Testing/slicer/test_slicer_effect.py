"""The Segment Editor effect's Qt-free path, for real against slicer-core (issue #9, items 6, 11, 12).

- The prediction lands where the volume's voxels are, through the volume's and the segmentation's parent transforms,
  on the editor's modifier grid; applied through the editor's own logic, the editable area and the intensity range
  mask it and the segment keeps its layer.
- `alignflow segmenter predict` writes a 0/1 label file on the input's exact grid, with one progress event per slice
  and one-line errors; `PredictionJob` runs it in a process and can be cancelled.
- The Qt layer (effect + in-Slicer test) cannot run here: it is checked statically to use the effect API.
"""

from __future__ import annotations

import ast
import json
import sys
import textwrap
import time

import numpy as np
import pytest

from slicer_helpers import MODULE_DIR, require_slicer_core, scene, write_volume_file  # noqa: F401

require_slicer_core()

import slicer  # noqa: E402
import vtk  # noqa: E402

from AlignFlowLib import mrml  # noqa: E402
from AlignFlowLib.mrml import segmenter as bridge  # noqa: E402

EFFECT_FILE = MODULE_DIR / "SegmentEditorAlignFlowLib" / "SegmentEditorEffect.py"
EFFECT_TEST_FILE = MODULE_DIR / "Testing" / "Python" / "SegmentEditorAlignFlowTest.py"


def _matrix(node_or_image, method: str = "GetIJKToRASMatrix") -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    getattr(node_or_image, method)(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _to_world(node) -> np.ndarray:
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _linear_transform(scene, rotate_z: float = 0.0, translate=(0.0, 0.0, 0.0)):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform = vtk.vtkTransform()
    transform.Translate(*translate)
    transform.RotateZ(rotate_z)
    node.SetMatrixTransformToParent(transform.GetMatrix())
    return node


def _volume(scene, voxels: np.ndarray, spacing=(0.8, 0.9, 3.0), origin=(5.0, -3.0, 7.0)):
    volume = mrml.volume_from_array(scene, voxels, "ct", rgb=False)
    volume.SetSpacing(*spacing)
    volume.SetOrigin(*origin)
    return volume


def _segment_voxels_in_volume(segmentation, segment_id: str, volume,
                              volume_to_world: np.ndarray | None = None) -> set[tuple[int, int, int]]:
    """The segment's filled voxels, located independently of the code under test: segment labelmap IJK → its
    image-to-world → the segmentation's transform to world → the volume's world-to-IJK (rounded), as (k, j, i)."""
    labelmap = slicer.vtkOrientedImageData()
    segmentation.GetBinaryLabelmapRepresentation(segment_id, labelmap)
    extent = labelmap.GetExtent()
    if extent[0] > extent[1]:
        return set()
    from vtk.util import numpy_support

    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1])
    k, j, i = np.nonzero(values)
    ijk = np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)])
    world = _to_world(segmentation) @ _matrix(labelmap, "GetImageToWorldMatrix") @ ijk
    volume_ijk = np.linalg.inv((_to_world(volume) if volume_to_world is None else volume_to_world)
                               @ _matrix(volume)) @ world
    rounded = np.rint(volume_ijk[:3]).astype(int)
    assert np.allclose(volume_ijk[:3], rounded, atol=1e-3), "segment voxels are off the volume's grid"
    return {(int(c), int(b), int(a)) for a, b, c in rounded.T}


def _editor_logic(scene, segmentation, volume, segment_id):
    """The Segment Editor's own masking and writing (vtkSlicerSegmentEditorLogic: what the effect's
    modifySelectedSegmentByLabelmap delegates to since Slicer 5.9; the same code lived in the effect base before)."""
    if not hasattr(slicer, "vtkSlicerSegmentEditorLogic"):
        pytest.skip("this slicer-core has no vtkSlicerSegmentEditorLogic")
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(scene)
    parameters = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    logic.SetSegmentEditorNode(parameters)
    parameters.SetAndObserveSegmentationNode(segmentation)
    logic.SetSourceVolumeNode(volume)
    logic.SetCurrentSegmentID(segment_id)
    assert logic.ResetModifierLabelmapToDefault()
    return logic, parameters


# Item 6: transforms, editor masking, layers, preview.

def test_prediction_lands_under_the_segmentations_transform(scene):
    """The segmentation sits under a whole-voxel translation: the labelmap must be shifted on its grid by exactly
    that, so the filled voxels are where the predicted ones are in the world (the old code ignored transforms)."""
    voxels = np.zeros((4, 10, 12), np.int16)
    voxels[1:3, 3:6, 4:8] = 500
    volume = _volume(scene, voxels)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segment_id = mrml.add_segment(segmentation, "lesion")
    transform = _linear_transform(scene, translate=(2 * 0.8, -1 * 0.9, 3.0))
    segmentation.SetAndObserveTransformNodeID(transform.GetID())

    modifier = bridge.modifier_labelmap(scene, voxels > 100, volume, segmentation)
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        modifier, segmentation, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    expected = {tuple(int(v) for v in index) for index in np.argwhere(voxels > 100)}
    assert _segment_voxels_in_volume(segmentation, segment_id, volume) == expected


def test_oriented_labelmap_follows_both_parent_transforms(scene):
    """Volume and segmentation under different rotations: the labelmap's image-to-world matrix, taken through the
    segmentation's transform, is the volume's IJK-to-world matrix (linear transforms change geometry only)."""
    voxels = np.zeros((3, 8, 9), np.uint8)
    voxels[1, 2:5, 3:7] = 1
    volume = _volume(scene, voxels)
    volume.SetAndObserveTransformNodeID(_linear_transform(scene, 20.0, (1.0, 2.0, -4.0)).GetID())
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segmentation.SetAndObserveTransformNodeID(_linear_transform(scene, -35.0, (-3.0, 0.5, 2.0)).GetID())

    labelmap = bridge.segmentation_labelmap(scene, voxels, volume, segmentation)
    assert np.allclose(_to_world(segmentation) @ _matrix(labelmap, "GetImageToWorldMatrix"),
                       _to_world(volume) @ _matrix(volume), atol=1e-6)
    assert labelmap.GetExtent() == (0, 8, 0, 7, 0, 2)  # not resampled

    reference = bridge.reference_geometry(segmentation)
    modifier = bridge.resample_to_geometry(labelmap, reference)
    assert slicer.vtkOrientedImageDataResample.DoGeometriesMatch(modifier, reference)
    assert modifier.GetExtent() == reference.GetExtent()


def test_prediction_follows_a_warping_transform(scene):
    """A non-linear parent transform (a thin-plate spline that happens to be a whole-voxel shift) is resampled
    through, as Slicer shows the volume: the filled voxels still sit on the predicted ones in the world."""
    voxels = np.zeros((6, 10, 12), np.uint8)
    voxels[0:2, 2:6, 4:9] = 1
    volume = _volume(scene, voxels, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segment_id = mrml.add_segment(segmentation, "lesion")
    shift = np.array([2.0, -1.0, 3.0])
    spline = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for point in [(0, 0, 0), (20, 0, 0), (0, 20, 0), (0, 0, 20), (20, 20, 20), (7, 3, 11)]:
        source.InsertNextPoint(point)
        target.InsertNextPoint(*(np.array(point) + shift))
    spline.SetSourceLandmarks(source)
    spline.SetTargetLandmarks(target)
    spline.SetBasisToR()
    warp = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    warp.SetAndObserveTransformToParent(spline)
    volume.SetAndObserveTransformNodeID(warp.GetID())

    modifier = bridge.modifier_labelmap(scene, voxels, volume, segmentation)
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0  # temporary node removed
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        modifier, segmentation, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    translation = np.eye(4)
    translation[:3, 3] = shift
    assert _segment_voxels_in_volume(segmentation, segment_id, volume, translation) == {
        tuple(int(v) for v in index) for index in np.argwhere(voxels)}


def test_editor_masks_the_prediction_and_keeps_the_layer(scene):
    """Applied like the effect does (modifier grid + ModificationModeSet through the editor's logic): the intensity
    range and the editable area cut the prediction, other segments follow the editor's overwrite setting, and the
    segment is not moved to a layer of its own (what SetBinaryLabelmapToSegment did)."""
    voxels = np.zeros((4, 10, 12), np.int16)
    voxels[1:3, 2:8, 2:10] = 500
    voxels[1:3, 2:8, 8:10] = 50  # predicted, but outside the intensity range
    volume = _volume(scene, voxels)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    area_id = mrml.add_segment(segmentation, "editable area")
    segment_id = mrml.add_segment(segmentation, "lesion")
    area = np.zeros(voxels.shape, bool)
    area[:, :6, :] = True  # rows 6-7 are outside the editable area
    logic, parameters = _editor_logic(scene, segmentation, volume, area_id)
    logic.ModifySegmentByLabelmap(segmentation, area_id, bridge.modifier_labelmap(scene, area, volume, segmentation),
                                  logic.ModificationModeSet, True, True)
    assert segmentation.GetSegmentation().GetNumberOfLayers() == 1
    transform = _linear_transform(scene, translate=(0.8, 0.0, 0.0))
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    volume.SetAndObserveTransformNodeID(transform.GetID())  # both moved together: the grids still coincide

    logic.SetCurrentSegmentID(segment_id)
    parameters.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    parameters.SetMaskSegmentID(area_id)
    parameters.SetSourceVolumeIntensityMask(True)
    parameters.SetSourceVolumeIntensityMaskRange(100.0, 1000.0)
    assert logic.ResetModifierLabelmapToDefault()
    modifier = bridge.modifier_labelmap(scene, voxels > 0, volume, segmentation, logic.GetModifierLabelmap())
    logic.ModifySegmentByLabelmap(segmentation, segment_id, modifier, logic.ModificationModeSet, True, False)

    expected = (voxels > 100) & area
    assert expected.sum() == 2 * 4 * 6
    assert _segment_voxels_in_volume(segmentation, segment_id, volume) == {
        tuple(int(v) for v in index) for index in np.argwhere(expected)}
    assert _segment_voxels_in_volume(segmentation, area_id, volume) == {  # the editor's default: overwrite others
        tuple(int(v) for v in index) for index in np.argwhere(area & ~expected)}
    assert segmentation.GetSegmentation().GetNumberOfLayers() == 1


def test_preview_shows_the_prediction_without_touching_the_segment(scene):
    voxels = np.zeros((2, 8, 8), np.int16)
    voxels[:, 2:5, 3:6] = 300
    volume = _volume(scene, voxels)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segment_id = mrml.add_segment(segmentation, "lesion")
    transform = _linear_transform(scene, translate=(1.6, 0.0, 0.0))
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    before = scene.GetNumberOfNodes()

    preview = bridge.show_preview(scene, segmentation, bridge.segmentation_labelmap(scene, voxels > 0, volume,
                                                                                    segmentation))
    assert preview.GetParentTransformNode() is transform
    assert preview.GetSegmentation().GetNumberOfSegments() == 1
    preview_id = preview.GetSegmentation().GetNthSegmentID(0)
    expected = {tuple(int(v) for v in index) for index in np.argwhere(voxels > 0)}
    assert _segment_voxels_in_volume(preview, preview_id, volume) == expected
    assert _segment_voxels_in_volume(segmentation, segment_id, volume) == set()
    assert not preview.GetSaveWithScene()

    bridge.remove_preview(scene, preview)
    assert scene.GetNumberOfNodes() == before  # the preview and its display node are gone


def test_effect_applies_through_the_editor_api():
    """The effect file (Qt, not runnable here) uses the effect API: visibility confirmed, then the modifier set with
    ModificationModeSet; no SetBinaryLabelmapToSegment, no in-process segmentation on the GUI thread."""
    source = EFFECT_FILE.read_text()
    tree = ast.parse(source)
    methods = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "SetBinaryLabelmapToSegment" not in source and "apply_segmenter" not in source
    calls = []
    for node in ast.walk(methods["onApply"]):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            calls.append((node.lineno, node.func.attr, ast.unparse(node)))
    names = [name for _, name, _ in sorted(calls)]
    assert "confirmCurrentSegmentVisible" in names and "modifySelectedSegmentByLabelmap" in names
    assert names.index("confirmCurrentSegmentVisible") < names.index("saveStateForUndo") < names.index(
        "modifySelectedSegmentByLabelmap")
    modify = next(text for _, name, text in calls if name == "modifySelectedSegmentByLabelmap")
    assert "ModificationModeSet" in modify
    assert "defaultModifierLabelmap" in ast.unparse(methods["onApply"])
    for required in ("onPreview", "onCancel", "onDiscard", "deactivate"):
        assert required in methods, f"the effect has no {required}"
    assert "PredictionJob" in source and "QTimer" in source


# Item 11: the CLI command and the job that runs it.

@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    """A small real network exported by the library itself (whatever its format), deterministic weights."""
    torch = pytest.importorskip("torch")
    from AlignFlowLib.segmenter.export import export_segmenter
    from AlignFlowLib.segmenter.model import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter("unet", 1).eval()
    return export_segmenter(model, tmp_path_factory.mktemp("model") / "exported", architecture="unet",
                            in_channels=1, image_size_px=32)


def _expected_prediction(model_folder, voxels: np.ndarray) -> np.ndarray:
    from AlignFlowLib.predict import segment_volume
    from AlignFlowLib.segmenter.export import ExportedSegmenter

    return segment_volume(ExportedSegmenter.load(model_folder), voxels, 2)


def _phantom(shape=(3, 20, 24)) -> np.ndarray:
    rng = np.random.default_rng(0)
    voxels = rng.normal(0, 40, shape).astype(np.int16)
    voxels[:, 5:14, 6:18] += 600
    return voxels


def test_cli_predict_writes_labels_on_the_input_grid(tmp_path, exported_model):
    import SimpleITK as sitk

    from AlignFlowLib.runner import run_cli

    voxels = _phantom()
    source = write_volume_file(tmp_path / "ct.nii.gz", voxels)
    events: list[dict] = []
    code = run_cli(["segmenter", "predict", "--model", str(exported_model.parent), "--volume",
                    str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out" / "label.nrrd"), "--device", "cpu"],
                   events.append, cwd=tmp_path, timeout_s=300)
    assert code == 0, events[-1]
    progress = [e for e in events if e["event"] == "progress"]
    assert [(e["stage"], e["step"], e["total"]) for e in progress] == [("segment", k, 3) for k in (1, 2, 3)]
    assert events[-1]["event"] == "done" and events[-1]["num_slices"] == 3

    label = sitk.ReadImage(str(tmp_path / "out" / "label.nrrd"))
    assert label.GetPixelID() == sitk.sitkUInt8 and label.GetSize() == source.GetSize()
    assert np.allclose(label.GetSpacing(), source.GetSpacing()) and np.allclose(label.GetOrigin(), source.GetOrigin())
    assert np.allclose(label.GetDirection(), source.GetDirection())
    values = sitk.GetArrayFromImage(label)
    assert set(np.unique(values)) <= {0, 1}
    assert np.array_equal(values.astype(bool), _expected_prediction(exported_model, voxels))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["label.nrrd"]  # no temporary left


def test_cli_predict_a_2d_colour_image(tmp_path, capsys, exported_model):
    """A photograph: one pass, a 2-D label image of the same size."""
    import SimpleITK as sitk
    from PIL import Image

    from AlignFlowLib import cli

    rgb = np.zeros((18, 26, 3), np.uint8)
    rgb[4:12, 6:20] = (220, 120, 60)
    Image.fromarray(rgb).save(tmp_path / "frame.png")
    assert cli.main(["segmenter", "predict", "--model", str(exported_model), "--volume", str(tmp_path / "frame.png"),
                     "--out", str(tmp_path / "frame.nii.gz"), "--device", "cpu", "--progress", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["step"], e["total"]) for e in events if e["event"] == "progress"] == [(1, 1)]
    label = sitk.ReadImage(str(tmp_path / "frame.nii.gz"))
    assert label.GetDimension() == 2 and label.GetSize() == (26, 18)
    expected = _expected_prediction(exported_model, rgb[None])
    assert np.array_equal(sitk.GetArrayFromImage(label).astype(bool), expected[0])


@pytest.mark.parametrize("case, code, fragment", [
    ("missing volume", 3, "file not found"),
    ("unreadable volume", 3, "cannot be read as an image"),
    ("not a model", 3, "model.json missing"),
    ("bad output suffix", 2, "must end in one of"),
])
def test_cli_predict_bad_inputs(tmp_path, capsys, exported_model, case, code, fragment):
    from AlignFlowLib import cli

    volume, model, out = tmp_path / "ct.nrrd", exported_model, tmp_path / "label.nrrd"
    write_volume_file(volume, np.zeros((2, 8, 8), np.int16))
    if case == "missing volume":
        volume = tmp_path / "nothing.nrrd"
    elif case == "unreadable volume":
        volume = tmp_path / "broken.nrrd"
        volume.write_bytes(b"NRRD0004\nthis is not a header\n")
    elif case == "not a model":
        model = tmp_path
    else:
        out = tmp_path / "label.png"
    assert cli.main(["segmenter", "predict", "--model", str(model), "--volume", str(volume), "--out", str(out),
                     "--device", "cpu", "--progress", "jsonl"]) == code
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert error["event"] == "error" and error["exit_code"] == code
    assert fragment in error["message"] and "\n" not in error["message"]
    assert not out.exists()


def test_label_write_is_atomic(tmp_path, monkeypatch):
    """Interrupted between writing and renaming (a Cancel): neither the output nor a temporary file is left."""
    import SimpleITK as sitk

    from AlignFlowLib import predict

    like = sitk.GetImageFromArray(np.zeros((2, 4, 5), np.int16))

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.write_label(np.ones((2, 4, 5), bool), like, tmp_path / "label.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_prediction_job_end_to_end(scene, exported_model):
    """What the effect does on Preview, without Qt: the volume node (under a transform) goes to a file, the CLI runs
    in a process with progress, the result comes back on the volume's grid and into the segmentation's space."""
    voxels = _phantom((2, 20, 24))
    volume = _volume(scene, voxels)
    transform = _linear_transform(scene, translate=(0.8, 0.0, 0.0))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segment_id = mrml.add_segment(segmentation, "lesion")

    job = bridge.PredictionJob(scene, volume, exported_model, device="cpu").start()
    try:
        final = job.wait(timeout_s=300)
        assert final is not None and final["event"] == "done", final
        assert job.succeeded and job.error_message is None and job.progress == (2, 2)
        mask = job.mask()
    finally:
        job.cleanup()
    assert not job.folder.exists()
    assert np.array_equal(mask, _expected_prediction(exported_model, voxels))

    modifier = bridge.modifier_labelmap(scene, mask, volume, segmentation)
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        modifier, segmentation, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    assert _segment_voxels_in_volume(segmentation, segment_id, volume) == {
        tuple(int(v) for v in index) for index in np.argwhere(mask)}


def test_prediction_job_cancel_stops_the_real_cli(scene, exported_model):
    """Cancel during the slices: the CLI stops cleanly (exit 130) and leaves no label file."""
    volume = _volume(scene, _phantom((3000, 20, 24)))
    job = bridge.PredictionJob(scene, volume, exported_model, device="cpu").start()
    try:
        deadline = time.monotonic() + 300
        while job.progress[0] == 0 and job.running and time.monotonic() < deadline:
            job.poll()
            time.sleep(0.05)
        assert job.running and job.progress[1] == 3000, job.runner.result
        job.cancel()
        final = job.wait(timeout_s=120)
        assert final is not None and final["event"] == "error" and final.get("exit_code") == 130, final
        assert job.cancelled and not job.succeeded and job.error_message is None
        assert job.runner.returncode == 130 and not job.out_file.exists()
    finally:
        job.cancel()
        job.cleanup()


def test_prediction_job_cancel(scene, tmp_path):
    """Cancel ends the process; the job reports no error and no result, and cleans its temporary folder."""
    from AlignFlowLib.runner import ProcessRunner

    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys, time
        print(json.dumps({"event": "progress", "stage": "segment", "step": 1, "total": 50}), flush=True)
        cancel = os.environ.get("ALIGNFLOW_CANCEL_FILE")  # the runner's clean stop (a signal also ends this)
        for _ in range(600):
            if cancel and os.path.exists(cancel):
                print(json.dumps({"event": "error", "message": "cancelled", "exit_code": 130}), flush=True)
                sys.exit(130)
            time.sleep(0.1)
    """))
    volume = _volume(scene, np.zeros((2, 4, 4), np.int16))
    job = bridge.PredictionJob(scene, volume, tmp_path, runner_factory=lambda args: ProcessRunner(
        [sys.executable, str(script)], raw=True).start()).start()
    assert (job.folder / "volume.nrrd").is_file()
    for _ in range(200):
        job.poll()
        if job.progress == (1, 50):
            break
        time.sleep(0.05)
    assert job.running and job.progress == (1, 50)
    job.cancel()
    job.wait(timeout_s=30)
    assert job.finished and job.cancelled and not job.succeeded and job.error_message is None
    with pytest.raises(RuntimeError):
        job.mask()
    job.cleanup()
    assert not job.folder.exists()


def test_mask_from_a_label_file_of_another_grid_is_refused(scene, tmp_path):
    volume = _volume(scene, np.zeros((2, 6, 7), np.int16))
    write_volume_file(tmp_path / "label.nrrd", np.zeros((2, 6, 8), np.uint8))
    with pytest.raises(ValueError, match="does not match"):
        bridge.mask_from_label_file(tmp_path / "label.nrrd", volume)


# Item 12: the in-Slicer test of the effect.

def test_in_slicer_effect_test_can_pass():
    """It asserted the active effect before a segmentation existed (never true); registration is checked through the
    effect factory, the active effect only after the segmentation is set; the model comes from the library's export
    (whatever its format), not hand-written TorchScript files."""
    source = EFFECT_TEST_FILE.read_text()
    tree = ast.parse(source)
    body = "\n".join(ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
    assert "registeredEffects()" in source and "qSlicerSegmentEditorEffectFactory" in source
    first_active = min(node.lineno for node in ast.walk(tree)
                       if isinstance(node, ast.Attribute) and node.attr == "activeEffect")
    set_segmentation = min(node.lineno for node in ast.walk(tree)
                           if isinstance(node, ast.Attribute) and node.attr == "setSegmentationNode")
    assert set_segmentation < first_active
    assert "export_segmenter" in body and "torch.jit" not in source and "model.pt" not in source
    assert "onPreview" in body and "onApply" in body and "undo" in body
