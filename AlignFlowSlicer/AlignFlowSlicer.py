"""AlignFlow in 3D Slicer: synthesise target-styled image–mask pairs from a few target images and train a segmenter.

A thin shell: the widget binds a typed parameter node to the .ui and runs one `alignflow` process at a time; the
logic (AlignFlowSlicerLib.logic) turns scene nodes into folders, settings into CLI flags and results into nodes.
torch and monai are never imported here: AlignFlowLib is loaded only after the dependency check.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                          ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# Importing AlignFlowSlicerLib also makes a source checkout's AlignFlowLib findable (never imported here: torch).
from AlignFlowSlicerLib.logic import DOCUMENTATION_URL, MINIMUM_SLICER_VERSION, AlignFlowLogic, missing_requirements
from AlignFlowSlicerLib.parameters import AlignFlowSlicerParameterNode
from AlignFlowSlicerLib.selftest import AlignFlowSlicerTest  # noqa: F401  (Slicer looks up <Module>Test here)

# An action runs when its button is pressed and returns (CLI arguments, what to do when the job succeeds, what to do
# when it does not). Everything a callback needs is captured then, never read from the GUI when the job ends.
Action = Callable[[], Tuple[List[str], Optional[Callable[[], None]], Optional[Callable[[], None]]]]


class AlignFlowSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AlignFlow"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["AlignFlow developers (AlignFlow project)"]
        self.parent.helpText = (
            "Few-shot distribution-aligned flow matching: learn image-mask pairs from labelled source data, align "
            "the generator to a handful of unlabelled target images, synthesise target-styled pairs and train a "
            "segmenter. The Segment Editor gets an 'AlignFlow' effect that applies an exported segmenter. "
            f'See the <a href="{DOCUMENTATION_URL}">documentation</a>.')
        self.parent.acknowledgementText = (
            "Method: Yang et al. 2026, 'Few-Shot Distribution-Aligned Flow Matching for Data Synthesis in Medical "
            "Image Segmentation'. Built on 3D Slicer, PyTorch and MONAI.")
        if (slicer.app.majorVersion, slicer.app.minorVersion) < tuple(map(int, MINIMUM_SLICER_VERSION.split("."))):
            logging.warning(f"AlignFlow needs Slicer {MINIMUM_SLICER_VERSION} or newer")
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)
        slicer.app.connect("startupCompleted()", self.registerSampleData)

    def registerSampleData(self) -> None:
        """Offer the phantom workflow's inputs in the Sample Data module (the files ship with the extension)."""
        try:
            import SampleData
        except ImportError:  # a Slicer built without the Sample Data module
            return
        from AlignFlowSlicerLib.sample_data import register_sample_data
        register_sample_data(SampleData)

    def registerEditorEffect(self) -> None:
        """Register the 'AlignFlow' Segment Editor effect (its file lives beside this module)."""
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        instance = effects.qSlicerSegmentEditorScriptedEffect(None)
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorAlignFlowLib", "SegmentEditorEffect.py")
        instance.setPythonSource(path.replace("\\", "/"))
        instance.self().register()


class AlignFlowSlicerLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic: the typed parameter node, and the Qt-free core logic on Slicer's scene as `core`.

    Slicer constructs it with no arguments, and ScriptedLoadableModuleLogic.__init__ calls super().__init__() with
    none, so the core logic (which needs the scene) is held, not inherited.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = AlignFlowLogic(slicer.mrmlScene)

    def getParameterNode(self) -> AlignFlowSlicerParameterNode:
        return AlignFlowSlicerParameterNode(super().getParameterNode())


class AlignFlowSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[AlignFlowSlicerLogic] = None
        self._parameterNode: Optional[AlignFlowSlicerParameterNode] = None
        self._connectionTag = None
        self._job = None
        self._jobButton = None
        self._jobLabel = ""
        self._jobDone: Optional[Callable[[], None]] = None
        self._jobFailed: Optional[Callable[[], None]] = None
        self._lastPrediction: Optional[tuple] = None  # (segmentation, segment id) of the last Apply, for Undo

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
            self.ui.applyButton: self.onApply,
        }
        for button, action in actions.items():
            button.connect("clicked(bool)", lambda _checked, b=button, a=action: self._onLongAction(b, a))
        self.ui.loadRunButton.connect("clicked(bool)", lambda _checked: self.onLoadRun())
        self.ui.previewButton.connect("clicked(bool)", lambda _checked: self._guarded(self.onPreview))
        self.ui.undoApplyButton.connect("clicked(bool)", lambda _checked: self.onUndoApply())
        for combo in (self.ui.sourceVolumesComboBox, self.ui.referenceVolumesComboBox):
            combo.connect("checkedNodesChanged()", self._updateNodeListsFromGUI)
        for combo in (self.ui.presetComboBox, self.ui.deviceComboBox):
            combo.connect("currentIndexChanged(int)", lambda _index: self.updateRuntimeStatus())

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateRuntimeStatus()

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
        self._lastPrediction = None
        self.ui.undoApplyButton.enabled = False

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

    def updateRuntimeStatus(self) -> None:
        """The status line: torch/CUDA and the device jobs will use, in red when the preset would run on a CPU."""
        if missing_requirements():
            self.ui.runtimeLabel.text = "PyTorch and MONAI are installed on first use."
            return
        preset = self.ui.presetComboBox.currentText or "default"
        device = self.ui.deviceComboBox.currentText or "auto"
        try:
            line, warn = self.logic.core.runtime_status(preset, device)
        except Exception as error:  # a broken torch install: say so here, not in a traceback
            line, warn = f"PyTorch does not load: {error}", True
        self.ui.runtimeLabel.text = line
        self.ui.runtimeLabel.styleSheet = "color: #c0392b" if warn else ""

    # Dependencies: asked once, on first use; nothing is installed at import time.

    def ensureDependencies(self) -> bool:
        from AlignFlowSlicerLib.install import ensure_installed

        def torchLogic():
            import PyTorchUtils
            return PyTorchUtils.PyTorchUtilsLogic()

        wheels = os.environ.get("ALIGNFLOW_WHEELS") or qt.QSettings().value("AlignFlow/WheelFolder", "")
        ready = False
        with slicer.util.tryWithErrorDisplay("Installing AlignFlow's dependencies failed.", waitCursor=True):
            ready = ensure_installed(
                lambda text: slicer.util.confirmOkCancelDisplay(text, windowTitle="AlignFlow: install dependencies"),
                slicer.util.pip_install, torchLogic, Path(wheels) if wheels else None,
                lambda text: slicer.util.confirmYesNoDisplay(text, windowTitle="AlignFlow: restart needed"),
                slicer.util.restart)
        if ready:
            self.updateRuntimeStatus()
        return ready

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
            args, onDone, onFailed = action()  # may export scene nodes to the run folder first
            job = self.logic.core.start(args)
        except Exception as error:  # bad selection, unwritable folder: a dialog, not a console traceback
            slicer.util.errorDisplay(str(error), windowTitle="AlignFlow")
            return
        self.ui.logTextEdit.appendPlainText("$ alignflow " + " ".join(args))
        self._job, self._jobButton, self._jobDone, self._jobFailed = job, button, onDone, onFailed
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
        job, onDone, onFailed = self._job, self._jobDone, self._jobFailed
        self._jobButton.text = self._jobLabel
        self._job = self._jobButton = self._jobDone = self._jobFailed = None
        self._setButtonsEnabled(True)
        if job.error_message is None:
            self.ui.statusLabel.text = "Done."
            self.ui.progressBar.value = self.ui.progressBar.maximum
            if onDone is not None:
                self._guarded(onDone)
            return
        if onFailed is not None:
            onFailed()
        if job.cancelled:
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

    def _source(self, run: Path) -> Path:
        p = self._parameterNode
        if p.sourceFromFolder:
            return self._path(p.sourceFolder, "a source pair folder")
        return self.logic.core.export_source(p.sourceVolumes, run / "inputs" / "source", [p.sourceSegmentName])

    def _references(self, run: Path) -> Path:
        p = self._parameterNode
        if p.referencesFromFolder:
            return self._path(p.referencesFolder, "a reference folder")
        return self.logic.core.export_references(p.referenceVolumes, run / "inputs" / "references")

    def _optional(self, value: int) -> Optional[int]:
        return value or None  # 0 in a steps box means "the preset's value"

    # Actions: each captures the run folder (and whatever its callback needs) when it starts.

    def onTrain(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        return (self.logic.core.train_args(self._source(run), run, p.imageSizePx, self._optional(p.generatorSteps),
                                           self._optional(p.maskSteps), p.preset, p.resume),
                lambda: self._showRun(run), None)

    def onRunAll(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        test = Path(p.testFolder) if str(p.testFolder) not in ("", ".") else None
        count = p.previewCount
        args = self.logic.core.run_all_args(
            self._source(run), self._references(run), run, test, p.preset, p.imageSizePx,
            self._optional(p.generatorSteps), self._optional(p.maskSteps), self._optional(p.alignSteps),
            self._optional(p.segmenterSteps), p.numPairs, p.resume)
        return args, lambda: (self._showRun(run), self._preview(run, count)), None

    def onAlign(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        return (self.logic.core.align_args(run, self._references(run), self._optional(p.alignSteps), p.adapter,
                                           p.resume), lambda: self._showRun(run), None)

    def onSynthesize(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        count = p.previewCount
        return (self.logic.core.synthesize_args(run, p.numPairs, p.seed, p.maskSource),
                lambda: self._preview(run, count), None)

    def onSegmenterTrain(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        synthetic = self.logic.core.synthetic_folder(run)
        return (self.logic.core.segmenter_train_args(
            self._source(run), run / "segmenter", synthetic if (synthetic / "images").is_dir() else None,
            p.segmenterArch, self._optional(p.segmenterSteps)), lambda: self._showRun(run), None)

    def onEvaluate(self):
        p, run = self._parameterNode, self._run()
        self.logic.core.device = p.device
        model = self.logic.core.exported_segmenter(run)
        return (self.logic.core.segmenter_evaluate_args(model, self._path(p.testFolder, "a labelled test pair folder"),
                                                        run / "segmenter" / "evaluation.json"), None, None)

    def onExport(self):
        self.logic.core.device = self._parameterNode.device
        out = self._path(self._parameterNode.exportFolder, "an export folder (Segmenter panel)")
        return self.logic.core.segmenter_export_args(self._run() / "segmenter", out), None, None

    def onApply(self):
        """Segment a volume in the job process; the result becomes a new segment (Undo removes it)."""
        p = self._parameterNode
        volume, segmentation = p.applyVolume, p.applySegmentation
        if volume is None or segmentation is None:
            raise ValueError("Choose the volume to segment and the segmentation for the result.")
        self.logic.core.device = p.device
        model = p.exportFolder if str(p.exportFolder) not in ("", ".") else self._run()
        args, work = self.logic.core.prepare_prediction(Path(model), volume)

        def done() -> None:
            segment_id, filled = self.logic.core.import_prediction(work, volume, segmentation)
            self._lastPrediction = (segmentation, segment_id)
            self.ui.undoApplyButton.enabled = True
            name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
            self.ui.statusLabel.text = (f"Segmenter filled {filled} voxels into the new segment {name!r}."
                                        if filled else f"The segmenter found nothing; {name!r} is empty.")

        return args, done, lambda: self.logic.core.discard_prediction(work)

    def onUndoApply(self) -> None:
        if self._lastPrediction is not None:
            self.logic.core.undo_prediction(*self._lastPrediction)
        self._lastPrediction = None
        self.ui.undoApplyButton.enabled = False

    # Results back in the scene.

    def _showRun(self, run: Path) -> None:
        self.ui.runSummaryLabel.text = self.logic.core.run_summary(run)

    def onLoadRun(self) -> None:
        try:
            self._showRun(self._run())
        except ValueError as error:
            slicer.util.errorDisplay(str(error), windowTitle="AlignFlow")

    def onPreview(self) -> None:
        self._preview(self._run(), self._parameterNode.previewCount)

    def _preview(self, run: Path, count: int) -> None:
        if count == 0:
            return
        _, pairs = self.logic.core.load_synthetic(self.logic.core.synthetic_folder(run), count)
        if pairs:
            slicer.util.setSliceViewerLayers(background=pairs[0].volume, fit=True)
