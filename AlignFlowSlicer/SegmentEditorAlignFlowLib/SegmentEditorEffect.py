"""Segment Editor effect "AlignFlow": fill the selected segment with an exported AlignFlow segmenter's prediction.

A thin wrapper: the work is `AlignFlowLib.mrml.apply_segmenter` (tested against a real MRML scene); this file only
adds the options panel and undo. torch is imported by that function, on Apply, never here.
"""

from __future__ import annotations

import os
from pathlib import Path

import ctk
import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

MODEL_FOLDER = "AlignFlow.ModelFolder"


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "AlignFlow"
        scriptedEffect.perSegment = True  # writes into the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)

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
                "(model.pt + model.json) or a run folder, then Apply: the selected segment is replaced by the "
                "prediction (Undo restores it). 3-D volumes are segmented slice by slice along the axis the model "
                "was trained on.</html>")

    def setupOptionsFrame(self) -> None:
        self.modelFolderEdit = ctk.ctkPathLineEdit()
        self.modelFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.modelFolderEdit.settingKey = "AlignFlow/ModelFolder"
        self.modelFolderEdit.toolTip = "Exported segmenter folder, or an AlignFlow run folder"
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelFolderEdit)
        self.modelFolderEdit.connect("currentPathChanged(QString)", lambda _path: self.updateMRMLFromGUI())
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.toolTip = "Replace the selected segment with the segmenter's prediction"
        self.scriptedEffect.addOptionsWidget(self.applyButton)
        self.applyButton.connect("clicked()", self.onApply)

    def setMRMLDefaults(self) -> None:
        self.scriptedEffect.setParameterDefault(MODEL_FOLDER, "")

    def updateGUIFromMRML(self) -> None:
        blocked = self.modelFolderEdit.blockSignals(True)
        self.modelFolderEdit.currentPath = self.scriptedEffect.parameter(MODEL_FOLDER)
        self.modelFolderEdit.blockSignals(blocked)

    def updateMRMLFromGUI(self) -> None:
        self.scriptedEffect.setParameter(MODEL_FOLDER, self.modelFolderEdit.currentPath)

    def onApply(self) -> None:
        from AlignFlowSlicerLib.logic import AlignFlowLogic, missing_requirements

        missing = missing_requirements()
        if missing:
            slicer.util.errorDisplay("AlignFlow's Python packages are missing (" + ", ".join(r.pip for r in missing)
                                     + "). Open the AlignFlow module once and start any action to install them.")
            return
        parameters = self.scriptedEffect.parameterSetNode()
        volume = parameters.GetSourceVolumeNode()
        if volume is None or not self.modelFolderEdit.currentPath:
            slicer.util.errorDisplay("Choose a source volume and the model folder first.")
            return
        model = AlignFlowLogic.exported_segmenter(Path(self.modelFolderEdit.currentPath))
        self.modelFolderEdit.addCurrentPathToHistory()
        self.scriptedEffect.saveStateForUndo()
        with slicer.util.tryWithErrorDisplay("AlignFlow segmentation failed.", waitCursor=True):
            from AlignFlowLib.mrml import apply_segmenter

            filled = apply_segmenter(slicer.mrmlScene, volume, parameters.GetSegmentationNode(),
                                     parameters.GetSelectedSegmentID(), model)
        if filled == 0:
            slicer.util.showStatusMessage("AlignFlow: the segmenter found nothing in this volume.", 5000)
