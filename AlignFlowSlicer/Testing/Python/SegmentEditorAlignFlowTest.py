"""In-Slicer test of the 'AlignFlow' Segment Editor effect: registered, fills the selected segment, undoable."""

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import slicer


class SegmentEditorAlignFlowTest(unittest.TestCase):
    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_effect_fills_segment_with_undo()

    def test_effect_fills_segment_with_undo(self) -> None:
        from AlignFlowSlicerLib.logic import missing_requirements

        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
        editor.setActiveEffectByName("AlignFlow")
        self.assertIsNotNone(editor.activeEffect(), "the AlignFlow effect is not registered")
        if missing_requirements():
            self.skipTest("AlignFlow's Python dependencies are not installed")

        import torch
        from AlignFlowLib import mrml

        class Threshold(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return (x[:, :1] > 0.0).float() * 20.0 - 10.0

        voxels = np.zeros((1, 32, 32), np.uint8)
        voxels[0, 8:20, 10:24] = 250
        volume = mrml.volume_from_array(slicer.mrmlScene, voxels, "effect test", rgb=False)
        segmentation = mrml.segmentation_for(slicer.mrmlScene, volume, "effect test segmentation")
        segment_id = mrml.add_segment(segmentation, "lesion")
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        editor.setCurrentSegmentID(segment_id)
        editor.setActiveEffectByName("AlignFlow")
        effect = editor.activeEffect()
        with tempfile.TemporaryDirectory() as folder:
            torch.jit.script(Threshold()).save(str(Path(folder) / "model.pt"))
            (Path(folder) / "model.json").write_text(json.dumps({
                "format": "alignflow-segmenter", "format_version": 1, "architecture": "threshold",
                "labels": ["lesion"], "spatial_dims": 2, "in_channels": 1, "image_size_px": 32,
                "resize_mode": "letterbox", "intensity": "uint8-or-percentile", "threshold": 0.5,
                "output": "logits"}))
            effect.self().modelFolderEdit.currentPath = folder
            effect.self().onApply()
        filled = mrml.mask_array(slicer.mrmlScene, segmentation, volume, [segment_id])
        self.assertTrue(np.array_equal(filled, voxels > 128))
        editor.undo()
        self.assertFalse(mrml.mask_array(slicer.mrmlScene, segmentation, volume, [segment_id]).any())
