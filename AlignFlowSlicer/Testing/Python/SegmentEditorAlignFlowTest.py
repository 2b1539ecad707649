"""In-Slicer test of the 'AlignFlow' Segment Editor effect: registered, previews in the background, applies through
the editor (intensity range honoured), undoable. The model is made by the library's own export, whatever its format."""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import numpy as np
import slicer


class SegmentEditorAlignFlowTest(unittest.TestCase):
    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_effect_is_registered()
        self.setUp()
        self.test_effect_previews_applies_and_undoes()

    def test_effect_is_registered(self) -> None:
        """The module registers the effect at startup; the factory lists it whether or not a segmentation exists."""
        factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self.assertIn("AlignFlow", [effect.name for effect in factory.registeredEffects()])

    def test_effect_previews_applies_and_undoes(self) -> None:
        from AlignFlowSlicerLib.logic import missing_requirements

        if missing_requirements():
            self.skipTest("AlignFlow's Python dependencies are not installed")
        from AlignFlowLib import mrml

        rng = np.random.default_rng(0)
        voxels = rng.normal(0, 40, (3, 20, 24)).astype(np.int16)
        voxels[:, 5:14, 6:18] += 600
        volume = mrml.volume_from_array(slicer.mrmlScene, voxels, "effect test", rgb=False)
        segmentation = mrml.segmentation_for(slicer.mrmlScene, volume, "effect test segmentation")
        segment_id = mrml.add_segment(segmentation, "lesion")

        editor = slicer.qMRMLSegmentEditorWidget()
        editor.show()
        self.addCleanup(editor.close)
        editor.setMRMLScene(slicer.mrmlScene)
        parameters = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor.setMRMLSegmentEditorNode(parameters)
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        editor.setCurrentSegmentID(segment_id)
        editor.setActiveEffectByName("AlignFlow")
        active = editor.activeEffect()
        self.assertIsNotNone(active, "the AlignFlow effect cannot be activated")
        self.assertEqual(active.name, "AlignFlow")
        effect = active.self()

        with tempfile.TemporaryDirectory() as folder:
            model = self._export_model(Path(folder))
            expected = self._library_prediction(model, voxels)
            self.assertTrue(expected.any(), "the test network predicts nothing; change its seed")
            effect.modelFolderEdit.currentPath = str(model)

            self._preview(effect)
            self.assertIsNotNone(effect.previewNode)
            self.assertFalse(self._segment(segmentation, volume, segment_id).any(), "preview changed the segment")
            effect.onApply()
            self.assertIsNone(effect.previewNode)
            self.assertTrue(np.array_equal(self._segment(segmentation, volume, segment_id), expected))
            editor.undo()
            self.assertFalse(self._segment(segmentation, volume, segment_id).any())

            parameters.SetSourceVolumeIntensityMask(True)  # the editor's masking applies to the effect's result
            parameters.SetSourceVolumeIntensityMaskRange(300.0, 2000.0)
            self._preview(effect)
            effect.onApply()
            self.assertTrue(np.array_equal(self._segment(segmentation, volume, segment_id),
                                           expected & (voxels >= 300)))

            self._preview(effect)
            effect.onDiscard()
            self.assertIsNone(effect.previewNode)

    @staticmethod
    def _export_model(folder: Path) -> Path:
        """A small real network with fixed weights, written by the library's export (the format the effect reads)."""
        import torch
        from AlignFlowLib.segmenter.export import export_segmenter
        from AlignFlowLib.segmenter.model import build_segmenter

        torch.manual_seed(0)
        network = build_segmenter("unet", 1).eval()
        return Path(export_segmenter(network, folder / "exported", architecture="unet", in_channels=1,
                                     image_size_px=32))

    @staticmethod
    def _library_prediction(model: Path, voxels: np.ndarray) -> np.ndarray:
        from AlignFlowLib.predict import segment_volume
        from AlignFlowLib.segmenter.export import ExportedSegmenter

        return segment_volume(ExportedSegmenter.load(model), voxels, 2)

    def _preview(self, effect, timeout_s: float = 300.0) -> None:
        """Press Preview and let the GUI's timer poll the background process until the preview is shown."""
        effect.onPreview()
        self.assertTrue(effect.predictionRunning(), "Preview did not start a background segmentation")
        deadline = time.monotonic() + timeout_s
        while effect.job is not None:
            if time.monotonic() > deadline:
                effect.onCancel()
                self.fail("the background segmentation did not finish in time")
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNotNone(effect.prediction, effect.statusLabel.text)

    @staticmethod
    def _segment(segmentation, volume, segment_id: str) -> np.ndarray:
        from AlignFlowLib import mrml

        return mrml.mask_array(slicer.mrmlScene, segmentation, volume, [segment_id])
