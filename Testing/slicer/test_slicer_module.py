"""The AlignFlow module built as Slicer builds it (slicer_app.py: Slicer's ScriptedLoadableModule and parameter-node
wrapper behaviour on a real slicer-core scene): the panel opens, binds, runs jobs, survives scene close, applies a
segmenter into a new segment with undo, and shows its runtime status line (issue 9, defects 1, 2, 5, 10, 11, 14)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import vtk

from slicer_helpers import require_slicer_core, scene  # noqa: F401

require_slicer_core()

from slicer_app import SlicerStandIn  # noqa: E402

from AlignFlowLib import mrml  # noqa: E402


class FakeJob:
    """A ProcessRunner as the widget sees it; `finish()` ends it (the test decides when), `work` runs first."""

    def __init__(self, args, work=None):
        self.args, self.work = list(args), work
        self.finished = self.cancelled = False
        self.error_message = None
        self.returncode = None
        self._events: list[dict] = []

    def poll(self):
        events, self._events = self._events, []
        return events

    def cancel(self):
        self.cancelled, self.finished = True, True
        self.error_message, self.returncode = "cancelled", 130

    def finish(self, ok: bool = True):
        if self.work is not None:
            self.work(self.args)
        self._events.append({"event": "progress", "stage": "segmenter", "step": 1, "total": 1, "eta_s": 0.0})
        self.finished, self.returncode = True, 0 if ok else 3
        self.error_message = None if ok else "bad input"


@pytest.fixture
def slicer_app(monkeypatch, scene):  # noqa: F811
    app = SlicerStandIn(monkeypatch, scene)
    yield app
    app.unload()


def _use_fake_jobs(widget, work=None) -> list[FakeJob]:
    jobs: list[FakeJob] = []
    widget.logic.core._runner_factory = lambda args: jobs.append(FakeJob(args, work)) or jobs[-1]
    return jobs


def test_logic_constructs_with_no_arguments_as_slicer_does(slicer_app):
    logic = slicer_app.source.AlignFlowSlicerLogic()
    assert logic.moduleName == "AlignFlowSlicer"
    assert logic.core.scene is slicer_app.scene
    parameters = logic.getParameterNode()
    assert parameters.preset == "default" and parameters.applyVolume is None
    assert logic.getParameterNode().parameterNode is parameters.parameterNode  # the scene's singleton


def test_panel_opens_and_binds_every_parameter(slicer_app):
    widget = slicer_app.build()
    ui = widget.ui
    assert ui.applyVolumeComboBox.nodeTypes == ("vtkMRMLScalarVolumeNode",)
    assert "vtkMRMLLabelMapVolumeNode" in ui.applyVolumeComboBox.hideChildNodeTypes
    assert ui.applySegmentationComboBox.nodeTypes == ("vtkMRMLSegmentationNode",)
    # GUI → parameter node → GUI, through the real node.
    ui.presetComboBox.currentIndex = ui.presetComboBox.findText("demo")
    ui.presetComboBox.emit("currentIndexChanged(int)", ui.presetComboBox.currentIndex)
    assert widget._parameterNode.preset == "demo"
    rgb = mrml.volume_from_array(slicer_app.scene, np.zeros((1, 8, 8, 3), np.uint8), "photo", rgb=True)
    ui.applyVolumeComboBox.setCurrentNode(rgb)  # an RGB image is a vector volume, a scalar-volume subclass
    assert widget._parameterNode.applyVolume is rgb
    labelmap = slicer_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(ValueError, match="hidden"):
        ui.applyVolumeComboBox.setCurrentNode(labelmap)


def test_module_metadata_names_contributors_and_documentation(slicer_app):
    slicer_app.build()
    parent = slicer_app.moduleParent
    assert parent.title == "AlignFlow" and parent.categories == ["Segmentation"]
    assert parent.contributors and all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in parent.contributors)
    assert re.search(r'<a href="https://[^"]+">documentation</a>', parent.helpText)
    assert Path(parent.icon.path).is_file()


def test_status_line_names_torch_and_warns_before_a_cpu_run(slicer_app):
    import torch

    widget = slicer_app.build()
    ui = widget.ui
    assert f"torch {torch.__version__}" in ui.runtimeLabel.text
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU warning does not apply")
    assert "takes hours on a CPU" in ui.runtimeLabel.text and ui.runtimeLabel.styleSheet
    ui.presetComboBox.currentIndex = ui.presetComboBox.findText("demo")
    ui.presetComboBox.emit("currentIndexChanged(int)", ui.presetComboBox.currentIndex)
    assert "hours" not in ui.runtimeLabel.text and not ui.runtimeLabel.styleSheet


def _pair_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root


def test_job_callback_uses_the_run_folder_it_started_with(slicer_app, tmp_path):
    widget = slicer_app.build()
    jobs = _use_fake_jobs(widget)
    first, second = tmp_path / "first", tmp_path / "second"
    for run in (first, second):
        run.mkdir()
        (run / "config.json").write_text("{}")
    p = widget._parameterNode
    p.sourceFromFolder, p.sourceFolder, p.runFolder = True, _pair_folder(tmp_path / "pairs"), first
    widget.ui.trainButton.click()
    assert jobs and jobs[0].args[0] == "train" and widget.ui.trainButton.text == "Cancel"
    p.runFolder = second  # the user moves on while the job runs
    jobs[0].finish()
    slicer_app.run_timer_until_idle()
    assert widget.ui.runSummaryLabel.text.startswith("first:")
    assert widget.ui.trainButton.text == "Train generator" and not slicer_app.recorder.errors


def test_closing_the_scene_while_a_job_runs_is_harmless(slicer_app, tmp_path):
    widget = slicer_app.build()
    jobs = _use_fake_jobs(widget)
    run = tmp_path / "run"
    (run / "synthetic").mkdir(parents=True)
    p = widget._parameterNode
    p.runFolder, p.numPairs, p.previewCount = run, 4, 0
    widget.ui.synthesizeButton.click()
    slicer_app.scene.Clear(0)  # File > Close Scene: StartCloseEvent, EndCloseEvent
    jobs[0].finish()
    slicer_app.run_timer_until_idle()
    assert not slicer_app.recorder.errors and widget.ui.statusLabel.text == "Done."


def _choose_for_apply(widget, tmp_path: Path, volume, segmentation) -> None:
    """The Segmenter panel's choices: a model folder (the fake job never reads it), the volume, the segmentation."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    p = widget._parameterNode
    p.exportFolder, p.applyVolume, p.applySegmentation = model, volume, segmentation


def _threshold_prediction(args: list[str]) -> None:
    """What `alignflow segmenter predict` does, for a test: a 0/1 label volume on the input's grid."""
    import SimpleITK as sitk

    image = sitk.ReadImage(args[args.index("--volume") + 1])
    array = (sitk.GetArrayFromImage(image) > 100).astype(np.uint8)
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    sitk.WriteImage(labels, args[args.index("--out") + 1])


def test_apply_runs_as_a_job_into_a_new_segment_with_undo(slicer_app, tmp_path):
    widget = slicer_app.build()
    jobs = _use_fake_jobs(widget, _threshold_prediction)
    scene = slicer_app.scene
    voxels = np.zeros((2, 16, 16), np.int16)
    voxels[:, 4:9, 5:12] = 400
    volume = mrml.volume_from_array(scene, voxels, "CT", rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, "CT segmentation")
    mine = np.zeros(voxels.shape, bool)
    mine[0, 0:2, 0:2] = True
    user_segment = mrml.add_segment(segmentation, "AlignFlow lesion")  # same name as the result: must survive
    mrml.write_mask_to_segment(segmentation, user_segment, mine, volume)
    _choose_for_apply(widget, tmp_path, volume, segmentation)

    widget.ui.applyButton.click()
    assert jobs[0].args[:2] == ["segmenter", "predict"] and widget.ui.applyButton.text == "Cancel"
    work = Path(jobs[0].args[jobs[0].args.index("--out") + 1]).parent
    jobs[0].finish()
    slicer_app.run_timer_until_idle()
    assert not slicer_app.recorder.errors
    content = segmentation.GetSegmentation()
    assert content.GetNumberOfSegments() == 2
    new_id = widget._lastPrediction[1]
    assert content.GetSegment(new_id).GetName() == "AlignFlow lesion 2"
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [user_segment]), mine)
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [new_id]), voxels > 100)
    terminology = vtk.reference("")
    content.GetSegment(new_id).GetTag(content.GetSegment(new_id).GetTerminologyEntryTagName(), terminology)
    assert "^Mass~" in str(terminology)
    assert not work.exists(), "the temporary volume and prediction are removed"

    assert widget.ui.undoApplyButton.enabled
    widget.ui.undoApplyButton.click()
    assert content.GetNumberOfSegments() == 1 and content.GetSegment(user_segment) is not None
    assert not widget.ui.undoApplyButton.enabled


def test_cancelled_apply_leaves_the_segmentation_and_no_files(slicer_app, tmp_path):
    widget = slicer_app.build()
    jobs = _use_fake_jobs(widget, _threshold_prediction)
    scene = slicer_app.scene
    volume = mrml.volume_from_array(scene, np.zeros((1, 8, 8), np.int16), "CT", rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    _choose_for_apply(widget, tmp_path, volume, segmentation)
    widget.ui.applyButton.click()
    work = Path(jobs[0].args[jobs[0].args.index("--out") + 1]).parent
    widget.ui.applyButton.click()  # the button is Cancel now
    slicer_app.run_timer_until_idle()
    assert jobs[0].cancelled and segmentation.GetSegmentation().GetNumberOfSegments() == 0
    assert not work.exists() and "Cancelled" in widget.ui.statusLabel.text


def test_apply_places_the_segment_through_the_volumes_transform(slicer_app, tmp_path):
    """A volume under a translation: the new segment covers the same world positions as the bright voxels."""
    import vtk as _vtk

    widget = slicer_app.build()
    jobs = _use_fake_jobs(widget, _threshold_prediction)
    scene = slicer_app.scene
    voxels = np.zeros((1, 16, 16), np.int16)
    voxels[0, 3:7, 4:9] = 400
    volume = mrml.volume_from_array(scene, voxels, "moved", rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = _vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # 5 voxels (spacing 1) along R
    shift.SetMatrixTransformToParent(matrix)
    volume.SetAndObserveTransformNodeID(shift.GetID())  # the segmentation stays untransformed
    _choose_for_apply(widget, tmp_path, volume, segmentation)
    widget.ui.applyButton.click()
    jobs[0].finish()
    slicer_app.run_timer_until_idle()
    assert not slicer_app.recorder.errors
    segment_id = widget._lastPrediction[1]
    labelmap = segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation("Binary labelmap")
    world = _vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(world)
    extent = labelmap.GetExtent()
    array = mrml.nodes.numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
        extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    k, j, i = np.nonzero(array)
    centre = [i.mean() + extent[0], j.mean() + extent[2], k.mean() + extent[4], 1.0]
    ras = [sum(world.GetElement(r, c) * centre[c] for c in range(4)) for r in range(3)]
    ijk_to_ras = _vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    expected = [sum(ijk_to_ras.GetElement(r, c) * v for c, v in enumerate([6.0, 4.5, 0.0, 1.0])) for r in range(3)]
    expected[0] += 5.0
    assert np.allclose(ras, expected, atol=1e-6)


def test_startup_registers_the_effect_and_the_sample_data(slicer_app, monkeypatch):
    import sys
    import types

    slicer_app.build()
    registered, sample_calls = [], []

    class ScriptedEffect:
        def __init__(self, parent):
            self.source = None

        def setPythonSource(self, path):
            self.source = path

        def self(self):
            return types.SimpleNamespace(register=lambda: registered.append(self.source))

    effects = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt")
    effects.qSlicerSegmentEditorScriptedEffect = ScriptedEffect
    sample = types.ModuleType("SampleData")
    sample.SampleDataLogic = types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kwargs: sample_calls.append(kwargs))
    monkeypatch.setitem(sys.modules, "qSlicerSegmentationsEditorEffectsPythonQt", effects)
    monkeypatch.setitem(sys.modules, "SampleData", sample)
    import slicer

    slicer.app.emit("startupCompleted()")
    assert registered and Path(registered[0]).name == "SegmentEditorEffect.py" and Path(registered[0]).is_file()
    from urllib.parse import unquote, urlparse

    uris = [u for call in sample_calls for u in call["uris"]]
    assert uris and all(Path(unquote(urlparse(u).path)).is_file() for u in uris)


def test_reentering_the_module_rebinds_without_duplicating(slicer_app):
    """Slicer calls enter() each time the module is shown: the GUI is bound again, never twice."""
    widget = slicer_app.build()
    widget.exit()
    widget.enter()
    assert widget.ui.presetComboBox.items == ["default", "demo"]
    widget._parameterNode.preset = "demo"
    widget.ui.presetComboBox.currentIndex = 0
    widget.ui.presetComboBox.emit("currentIndexChanged(int)", 0)
    assert widget._parameterNode.preset == "default"
