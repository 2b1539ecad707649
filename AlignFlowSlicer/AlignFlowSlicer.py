"""AlignFlow in 3D Slicer: synthesise target-styled image–mask pairs from a few target images and train a segmenter.

A thin shell: the widget binds a typed parameter node to the .ui and runs one `alignflow` process at a time; the
logic (AlignFlowSlicerLib.logic) turns scene nodes into folders, settings into CLI flags and results into nodes.
torch and monai are never imported here: AlignFlowLib is loaded only after the dependency check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                          ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


def _useSourceCheckout() -> None:
    """Run from a source checkout (this folder in Additional module paths): make the sibling AlignFlowLib
    importable. In a built extension AlignFlowLib sits beside this file and this does nothing."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(root, "AlignFlowLib")) and root not in sys.path:
        sys.path.append(root)


_useSourceCheckout()

from AlignFlowSlicerLib.logic import AlignFlowLogic, missing_requirements  # noqa: E402
from AlignFlowSlicerLib.parameters import AlignFlowSlicerParameterNode  # noqa: E402

Action = Callable[[], tuple]  # () -> (CLI arguments, callback on success or None)


class AlignFlowSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AlignFlow"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["AlignFlow contributors"]
        self.parent.helpText = (
            "Few-shot distribution-aligned flow matching: learn image-mask pairs from labelled source data, align "
            "the generator to a handful of unlabelled target images, synthesise target-styled pairs and train a "
            "segmenter. The Segment Editor gets an 'AlignFlow' effect that applies an exported segmenter.")
        self.parent.acknowledgementText = (
            "Method: Yang et al. 2026, 'Few-Shot Distribution-Aligned Flow Matching for Data Synthesis in Medical "
            "Image Segmentation'. Built on 3D Slicer, PyTorch and MONAI.")
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self) -> None:
        """Register the 'AlignFlow' Segment Editor effect (its file lives beside this module)."""
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        instance = effects.qSlicerSegmentEditorScriptedEffect(None)
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorAlignFlowLib", "SegmentEditorEffect.py")
        instance.setPythonSource(path.replace("\\", "/"))
        instance.self().register()


class AlignFlowSlicerLogic(ScriptedLoadableModuleLogic, AlignFlowLogic):
    """The Qt-free AlignFlowLogic on Slicer's scene, plus the module's typed parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AlignFlowLogic.__init__(self, slicer.mrmlScene)

    def getParameterNode(self) -> AlignFlowSlicerParameterNode:
        return AlignFlowSlicerParameterNode(super().getParameterNode())


class AlignFlowSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: AlignFlowSlicerLogic | None = None
        self._parameterNode: AlignFlowSlicerParameterNode | None = None
        self._connectionTag = None
        self._job = None
        self._jobButton = None
        self._jobLabel = ""
        self._jobDone: Callable[[], None] | None = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AlignFlowSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AlignFlowSlicerLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._pollJob)
        actions: dict = {
            self.ui.trainButton: self.onTrain, self.ui.runAllButton: self.onRunAll, self.ui.alignButton: self.onAlign,
            self.ui.synthesizeButton: self.onSynthesize, self.ui.segmenterTrainButton: self.onSegmenterTrain,
            self.ui.evaluateButton: self.onEvaluate, self.ui.exportButton: self.onExport,
        }
        for button, action in actions.items():
            button.connect("clicked(bool)", lambda _checked, b=button, a=action: self._onLongAction(b, a))
        self.ui.loadRunButton.connect("clicked(bool)", lambda _checked: self.onLoadRun())
        self.ui.previewButton.connect("clicked(bool)", lambda _checked: self._guarded(self.onPreview))
        self.ui.applyButton.connect("clicked(bool)", lambda _checked: self._guarded(self.onApply))
        for combo in (self.ui.sourceVolumesComboBox, self.ui.referenceVolumesComboBox):
            combo.connect("checkedNodesChanged()", self._updateNodeListsFromGUI)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    # Parameter node.

    def cleanup(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode is not None and self._connectionTag is not None:
            self._parameterNode.disconnectGui(self._connectionTag)
            self._connectionTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.exit()
        self._parameterNode = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        if self._parameterNode is not None and self._connectionTag is not None:
            self._parameterNode.disconnectGui(self._connectionTag)
        self._parameterNode = self.logic.getParameterNode()
        self._connectionTag = self._parameterNode.connectGui(self.ui)
        for combo, nodes in ((self.ui.sourceVolumesComboBox, self._parameterNode.sourceVolumes),
                             (self.ui.referenceVolumesComboBox, self._parameterNode.referenceVolumes)):
            for node in nodes:
                combo.setCheckState(node, qt.Qt.Checked)

    def _updateNodeListsFromGUI(self) -> None:
        """No parameter-node connector exists for checkable combo boxes, so the two lists are synced here."""
        if self._parameterNode is not None:
            self._parameterNode.sourceVolumes = list(self.ui.sourceVolumesComboBox.checkedNodes())
            self._parameterNode.referenceVolumes = list(self.ui.referenceVolumesComboBox.checkedNodes())

    # Dependencies: asked once, on first use; nothing is installed at import time.

    def ensureDependencies(self) -> bool:
        missing = missing_requirements()
        if not missing:
            return True
        names = ", ".join(r.pip for r in missing)
        if not slicer.util.confirmOkCancelDisplay(
                f"AlignFlow needs these Python packages, which are not installed yet:\n\n{names}\n\n"
                "Install them now? This downloads several hundred MB and may take a few minutes.",
                windowTitle="AlignFlow: install dependencies"):
            return False
        with slicer.util.tryWithErrorDisplay("Installing AlignFlow's dependencies failed.", waitCursor=True):
            if any(r.module == "torch" for r in missing):
                try:  # the PyTorch extension picks the build that matches this computer's GPU
                    import PyTorchUtils
                    PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
                except ImportError:
                    slicer.util.pip_install("torch")
            rest = [r.pip for r in missing if r.module != "torch"]
            if rest:
                slicer.util.pip_install(rest)
        return not missing_requirements()

    # Long actions: one process at a time; its button becomes Cancel.

    def _onLongAction(self, button, action: Action) -> None:
        if self._job is not None:
            if button is self._jobButton:
                self._job.cancel()
                self.ui.statusLabel.text = "Cancelling: the run folder stays consistent, continue with Resume."
            return
        if not self.ensureDependencies():
            return
        try:
            args, onDone = action()  # may export scene nodes to the run folder first
            job = self.logic.start(args)
        except Exception as error:  # bad selection, unwritable folder: a dialog, not a console traceback
            slicer.util.errorDisplay(str(error), windowTitle="AlignFlow")
            return
        self.ui.logTextEdit.appendPlainText("$ alignflow " + " ".join(args))
        self._job, self._jobButton, self._jobDone = job, button, onDone
        self._jobLabel, button.text = button.text, "Cancel"
        self._setButtonsEnabled(False)
        self._timer.start()

    def _setButtonsEnabled(self, enabled: bool) -> None:
        for name in ("trainButton", "runAllButton", "alignButton", "synthesizeButton", "segmenterTrainButton",
                     "evaluateButton", "exportButton", "loadRunButton", "previewButton", "applyButton"):
            button = getattr(self.ui, name)
            button.enabled = enabled or button is self._jobButton

    def _pollJob(self) -> None:
        from AlignFlowLib.runner import dispatch

        for event in self._job.poll():
            dispatch(event, self._onProgress, self.ui.logTextEdit.appendPlainText)
        if not self._job.finished:
            return
        self._timer.stop()
        job, onDone = self._job, self._jobDone
        self._jobButton.text = self._jobLabel
        self._job = self._jobButton = self._jobDone = None
        self._setButtonsEnabled(True)
        if job.error_message is None:
            self.ui.statusLabel.text = "Done."
            self.ui.progressBar.value = self.ui.progressBar.maximum
            if onDone is not None:
                self._guarded(onDone)
        elif job.cancelled:
            self.ui.statusLabel.text = "Cancelled. Tick 'Resume' and start again to continue."
        else:
            self.ui.statusLabel.text = f"Failed (exit code {job.returncode})."
            slicer.util.errorDisplay(job.error_message, windowTitle="AlignFlow")

    def _onProgress(self, stage: str, step: int, total: int, eta_s, metrics: dict) -> None:
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = min(step, max(total, 1))
        eta = "" if eta_s is None else f", about {int(eta_s) // 60} min {int(eta_s) % 60} s left"
        shown = "  ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, float))
        self.ui.statusLabel.text = f"{stage}: step {step}/{total}{eta}  {shown}"

    def _guarded(self, function: Callable[[], None]) -> None:
        """Quick in-process actions: errors become a dialog, never a traceback in the console only."""
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay("AlignFlow failed.", waitCursor=True):
            function()

    # Inputs from the panels.

    def _path(self, value: Path, what: str) -> Path:
        if not str(value) or str(value) == ".":
            raise ValueError(f"Choose {what} first.")
        return Path(value)

    def _run(self) -> Path:
        return self._path(self._parameterNode.runFolder, "a run folder (Generator panel)")

    def _source(self) -> Path:
        p = self._parameterNode
        if p.sourceFromFolder:
            return self._path(p.sourceFolder, "a source pair folder")
        names = [p.sourceSegmentName] if p.sourceSegmentName.strip() else []
        return self.logic.export_source(p.sourceVolumes, self._run() / "inputs" / "source", names)

    def _references(self) -> Path:
        p = self._parameterNode
        if p.referencesFromFolder:
            return self._path(p.referencesFolder, "a reference folder")
        return self.logic.export_references(p.referenceVolumes, self._run() / "inputs" / "references")

    def _optional(self, value: int) -> int | None:
        return value or None  # 0 in a steps box means "the preset's value"

    # Actions: each returns (CLI arguments, what to do when it succeeds).

    def onTrain(self):
        p = self._parameterNode
        self.logic.device = p.device
        return self.logic.train_args(self._source(), self._run(), p.imageSizePx, self._optional(p.generatorSteps),
                                     self._optional(p.maskSteps), p.preset, p.resume), self.onLoadRun

    def onRunAll(self):
        p = self._parameterNode
        self.logic.device = p.device
        test = Path(p.testFolder) if str(p.testFolder) not in ("", ".") else None
        return self.logic.run_all_args(
            self._source(), self._references(), self._run(), test, p.preset, p.imageSizePx,
            self._optional(p.generatorSteps), self._optional(p.maskSteps), self._optional(p.alignSteps),
            self._optional(p.segmenterSteps), p.numPairs, p.resume), self._afterRunAll

    def _afterRunAll(self) -> None:
        self.onLoadRun()
        self.onPreview()

    def onAlign(self):
        p = self._parameterNode
        self.logic.device = p.device
        return self.logic.align_args(self._run(), self._references(), self._optional(p.alignSteps), p.adapter,
                                     p.resume), self.onLoadRun

    def onSynthesize(self):
        p = self._parameterNode
        self.logic.device = p.device
        return self.logic.synthesize_args(self._run(), p.numPairs, p.seed, p.maskSource), self.onPreview

    def onSegmenterTrain(self):
        p = self._parameterNode
        self.logic.device = p.device
        synthetic = self.logic.synthetic_folder(self._run())
        return self.logic.segmenter_train_args(
            self._source(), self._run() / "segmenter", synthetic if (synthetic / "images").is_dir() else None,
            p.segmenterArch, self._optional(p.segmenterSteps)), self.onLoadRun

    def onEvaluate(self):
        p = self._parameterNode
        model = self.logic.exported_segmenter(self._run())
        return self.logic.segmenter_evaluate_args(model, self._path(p.testFolder, "a labelled test pair folder"),
                                                  self._run() / "segmenter" / "evaluation.json"), None

    def onExport(self):
        out = self._path(self._parameterNode.exportFolder, "an export folder (Segmenter panel)")
        return self.logic.segmenter_export_args(self._run() / "segmenter", out), None

    def onLoadRun(self) -> None:
        try:
            self.ui.runSummaryLabel.text = self.logic.run_summary(self._run())
        except ValueError as error:
            slicer.util.errorDisplay(str(error), windowTitle="AlignFlow")

    def onPreview(self) -> None:
        count = self._parameterNode.previewCount
        if count == 0:
            return
        _, pairs = self.logic.load_synthetic(self.logic.synthetic_folder(self._run()), count)
        slicer.util.setSliceViewerLayers(background=pairs[0].volume, fit=True)

    def onApply(self) -> None:
        p = self._parameterNode
        if p.applyVolume is None or p.applySegmentation is None:
            raise ValueError("Choose the volume to segment and the segmentation for the result.")
        source = p.exportFolder if str(p.exportFolder) not in ("", ".") else self._run()
        _, filled = self.logic.apply_segmenter(Path(source), p.applyVolume, p.applySegmentation)
        self.ui.statusLabel.text = f"Segmenter filled {filled} voxels." if filled else "The segmenter found nothing."


class AlignFlowSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): scene → pair folder → scene, and the segmenter bridge."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        if missing_requirements():
            self.delayDisplay("AlignFlow dependencies are not installed; skipping the bridge test")
            return
        self.test_pairsRoundTrip()

    def test_pairsRoundTrip(self) -> None:
        import tempfile

        import numpy as np
        from AlignFlowLib import mrml

        logic = AlignFlowSlicerLogic()
        voxels = np.zeros((3, 32, 40), np.int16)
        voxels[1, 8:20, 10:30] = 400
        volume = mrml.volume_from_array(slicer.mrmlScene, voxels, "AlignFlowTest volume", rgb=False)
        segmentation = mrml.segmentation_for(slicer.mrmlScene, volume, "AlignFlowTest segmentation")
        mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "lesion"), voxels > 0, volume)

        with tempfile.TemporaryDirectory() as folder:
            pairs = logic.export_source([volume], Path(folder) / "pairs")
            _, loaded = mrml.load_pair_folder(slicer.mrmlScene, pairs)
            self.assertEqual(len(loaded), 1)
            self.assertTrue(np.array_equal(mrml.array_from_volume(loaded[0].volume), voxels))
            self.assertTrue(np.array_equal(mrml.mask_array(slicer.mrmlScene, loaded[0].segmentation, volume),
                                           voxels > 0))
        self.delayDisplay("AlignFlow pair round trip passed")
