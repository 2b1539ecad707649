"""The module's in-Slicer self test (Reload and Test, or ctest): scene → pair folder → scene through the real
application. Slicer finds it as `AlignFlowSlicer.AlignFlowSlicerTest`; the module file imports it from here."""

from __future__ import annotations

from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from .logic import AlignFlowLogic, missing_requirements


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

        logic = AlignFlowLogic(slicer.mrmlScene)
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
