"""Segment Editor effect "AlignFlow": fill the selected segment with an exported AlignFlow segmenter's prediction.

Preview runs `alignflow segmenter predict` in a separate process (progress bar, Cancel; the GUI stays responsive) and
shows the result as a temporary overlay; Apply writes it through the editor (`modifySelectedSegmentByLabelmap`), so
the editable area, the intensity range, the overwrite setting and Undo all apply; Discard drops it. The work is
Qt-free in `AlignFlowLib.mrml.segmenter` (tested against a real MRML scene); this file only adds the options panel,
the poll timer and the editor calls. AlignFlowLib is imported on use, never here.
"""

from __future__ import annotations

import os
from pathlib import Path

import ctk
import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

MODEL_FOLDER = "AlignFlow.ModelFolder"
POLL_INTERVAL_MS = 200


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "AlignFlow"
        scriptedEffect.perSegment = True  # writes into the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.job = None  # the running AlignFlowLib.mrml.segmenter.PredictionJob
        self.prediction = None  # (volume node, (K, J, I) bool mask) shown in the preview, waiting for Apply
        self.previewNode = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        cloned = effects.qSlicerSegmentEditorScriptedEffect(None)
        cloned.setPythonSource(__file__.replace("\\", "/"))
        return cloned

    def icon(self):
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self) -> str:
        return ("<html>Segment the source volume with a segmenter trained by AlignFlow.<p>Choose the exported folder "
                "(with model.json) or a run folder, then <b>Preview</b>: the volume is segmented in the background "
                "(slice by slice along the axis the model was trained on) and shown as an overlay. <b>Apply</b> "
                "replaces the selected segment with it, within the editable area and intensity range (Undo restores "
                "it); <b>Discard</b> drops it.</html>")

    def setupOptionsFrame(self) -> None:
        self.modelFolderEdit = ctk.ctkPathLineEdit()
        self.modelFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.modelFolderEdit.settingKey = "AlignFlow/ModelFolder"
        self.modelFolderEdit.toolTip = "Exported segmenter folder, or an AlignFlow run folder"
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelFolderEdit)
        self.modelFolderEdit.connect("currentPathChanged(QString)", lambda _path: self.updateMRMLFromGUI())

        self.previewButton = self._button("Preview", "Segment the source volume in the background and show the "
                                          "result before changing anything", self.onPreview)
        self.scriptedEffect.addOptionsWidget(self.previewButton)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.statusLabel = qt.QLabel("")
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        self.applyButton = self._button("Apply", "Replace the selected segment with the preview, within the editable "
                                        "area and intensity range (Undo restores it)", self.onApply)
        self.discardButton = self._button("Discard", "Remove the preview without changing the segment",
                                          self.onDiscard)
        row = qt.QHBoxLayout()
        row.addWidget(self.applyButton)
        row.addWidget(self.discardButton)
        self.scriptedEffect.addOptionsWidget(row)
        self.updateButtons()

    def _button(self, text: str, toolTip: str, slot) -> qt.QPushButton:
        button = qt.QPushButton(text)
        button.objectName = self.__class__.__name__ + text
        button.toolTip = toolTip
        button.connect("clicked()", slot)
        return button

    def setMRMLDefaults(self) -> None:
        self.scriptedEffect.setParameterDefault(MODEL_FOLDER, "")

    def updateGUIFromMRML(self) -> None:
        blocked = self.modelFolderEdit.blockSignals(True)
        self.modelFolderEdit.currentPath = self.scriptedEffect.parameter(MODEL_FOLDER)
        self.modelFolderEdit.blockSignals(blocked)
        self.updateButtons()

    def updateMRMLFromGUI(self) -> None:
        self.scriptedEffect.setParameter(MODEL_FOLDER, self.modelFolderEdit.currentPath)

    def updateButtons(self) -> None:
        running = self.predictionRunning()
        self.previewButton.text = "Cancel" if running else "Preview"
        self.progressBar.visible = running
        self.applyButton.enabled = self.prediction is not None and not running
        self.discardButton.enabled = self.prediction is not None and not running

    def predictionRunning(self) -> bool:
        return self.job is not None and self.job.running

    def sourceVolumeNodeChanged(self) -> None:
        self.onCancel()
        self.onDiscard()  # a preview of another volume must not be applied to this one

    def deactivate(self) -> None:
        self.onCancel()
        self.onDiscard()

    def cleanup(self) -> None:
        self.timer.stop()
        self.timer.disconnect("timeout()", self.onPoll)

    # Preview: run the prediction in a separate process, poll it, show the result.

    def onPreview(self) -> None:
        if self.predictionRunning():
            self.onCancel()
            return
        from AlignFlowSlicerLib.logic import AlignFlowLogic, missing_requirements

        missing = missing_requirements()
        if missing:
            slicer.util.errorDisplay("AlignFlow's Python packages are missing (" + ", ".join(r.pip for r in missing)
                                     + "). Open the AlignFlow module once and start any action to install them.")
            return
        volume = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        if volume is None or not self.modelFolderEdit.currentPath:
            slicer.util.errorDisplay("Choose a source volume and the model folder first.")
            return
        self.onDiscard()
        self.modelFolderEdit.addCurrentPathToHistory()
        from AlignFlowLib.mrml.segmenter import PredictionJob

        with slicer.util.tryWithErrorDisplay("AlignFlow could not start the segmentation.", waitCursor=True):
            model = AlignFlowLogic.exported_segmenter(Path(self.modelFolderEdit.currentPath))
            self.job = PredictionJob(slicer.mrmlScene, volume, model).start()
            self.progressBar.setRange(0, 0)  # busy until the first progress event
            self.statusLabel.text = "Loading the segmenter..."
            self.timer.start()
        self.updateButtons()

    def onCancel(self) -> None:
        """Stop a running prediction (the process tree ends; nothing is changed)."""
        if self.predictionRunning():
            self.job.cancel()
            self.statusLabel.text = "Cancelling..."

    def onPoll(self) -> None:
        job = self.job
        if job is None:
            self.timer.stop()
            return
        for event in job.poll():
            if event.get("event") == "progress" and event.get("total"):
                self.progressBar.setRange(0, int(event["total"]))
                self.progressBar.value = int(event["step"])
                eta = event.get("eta_s")
                self.statusLabel.text = f"Segmenting slice {event['step']} of {event['total']}" + (
                    f", about {eta:.0f} s left" if eta is not None else "")
        if not job.finished:
            return
        self.timer.stop()
        self.job = None
        try:
            if job.succeeded:
                self.showPrediction(job.volume_node, job.mask())
            elif job.cancelled:
                self.statusLabel.text = "Cancelled."
            else:
                self.statusLabel.text = "Failed."
                slicer.util.errorDisplay("AlignFlow segmentation failed:\n" + (job.error_message or "unknown error"))
        except Exception as error:  # reading the result back: report it, never leave the effect stuck
            self.statusLabel.text = "Failed."
            slicer.util.errorDisplay(f"AlignFlow could not read the segmentation back: {error}")
        finally:
            job.cleanup()
            self.updateButtons()

    def showPrediction(self, volume, mask) -> None:
        from AlignFlowLib.mrml.segmenter import segmentation_labelmap, show_preview

        parameters = self.scriptedEffect.parameterSetNode()
        segmentation = parameters.GetSegmentationNode()
        segment = segmentation.GetSegmentation().GetSegment(parameters.GetSelectedSegmentID() or "")
        color = segment.GetColor() if segment is not None else (0.9, 0.8, 0.1)
        self.previewNode = show_preview(slicer.mrmlScene, segmentation,
                                        segmentation_labelmap(slicer.mrmlScene, mask, volume, segmentation), color)
        self.prediction = (volume, mask)
        filled = int(mask.sum())
        self.statusLabel.text = (f"Preview: {filled} voxels. Apply or Discard." if filled else
                                 "The segmenter found nothing in this volume.")

    # Apply / Discard.

    def onApply(self) -> None:
        """Write the preview into the selected segment through the editor (masking, overwrite setting, undo)."""
        if self.prediction is None:
            return
        if not self.scriptedEffect.parameterSetNode().GetSelectedSegmentID():
            slicer.util.errorDisplay("Select the segment to fill first.")
            return
        if not self.scriptedEffect.confirmCurrentSegmentVisible():
            return
        from AlignFlowLib.mrml.segmenter import modifier_labelmap

        volume, mask = self.prediction
        segmentation = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        with slicer.util.tryWithErrorDisplay("AlignFlow could not apply the segmentation.", waitCursor=True):
            grid = self.scriptedEffect.defaultModifierLabelmap()  # the source volume's grid in the segmentation
            modifier = modifier_labelmap(slicer.mrmlScene, mask, volume, segmentation, grid)
            self.scriptedEffect.saveStateForUndo()
            self.scriptedEffect.modifySelectedSegmentByLabelmap(
                modifier, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet)
            self.onDiscard()
            self.statusLabel.text = "Applied (Undo restores the segment)."

    def onDiscard(self) -> None:
        """Remove the preview overlay; the segmentation is untouched."""
        if self.previewNode is not None:
            from AlignFlowLib.mrml.segmenter import remove_preview

            remove_preview(slicer.mrmlScene, self.previewNode)
        self.previewNode = None
        self.prediction = None
        if hasattr(self, "applyButton"):
            self.updateButtons()
