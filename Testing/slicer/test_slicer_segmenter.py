"""Applying an exported segmenter to volume nodes fills a segment (2-D RGB and 3-D, along model.json's axis)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_helpers import ThresholdSegmenter, require_slicer_core, scene  # noqa: F401

require_slicer_core()

from AlignFlowLib import mrml  # noqa: E402


def test_fills_a_new_segment_in_a_3d_volume(scene):
    voxels = np.zeros((4, 10, 12), np.int16)
    voxels[1:3, 2:6, 3:9] = 500
    volume = mrml.volume_from_array(scene, voxels, "ct", rgb=False)
    volume.SetSpacing(0.8, 0.8, 3.0)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    segmentation.CreateDefaultDisplayNodes()
    segmenter = ThresholdSegmenter(100)
    filled = mrml.apply_segmenter(scene, volume, segmentation, None, segmenter=segmenter, segment_name="liver")
    assert filled == int((voxels > 100).sum()) == 48
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("liver")
    assert segment_id
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [segment_id]), voxels > 100)
    assert segmenter.shapes == [(10, 12)] * 4  # axial slices by default


def test_replaces_the_selected_segment_of_an_rgb_image(scene):
    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[4:10, 5:15, 0] = 200
    volume = mrml.volume_from_array(scene, rgb, "photo", rgb=True)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    keep = mrml.add_segment(segmentation, "other")
    target = mrml.add_segment(segmentation, "polyp")
    everything = np.ones((16, 20), bool)
    mrml.write_mask_to_segment(segmentation, target, everything, volume)
    mrml.write_mask_to_segment(segmentation, keep, everything, volume)
    segmenter = ThresholdSegmenter(100)
    assert mrml.apply_segmenter(scene, volume, segmentation, target, segmenter=segmenter) == 60
    assert segmenter.shapes == [(16, 20, 3)]  # one call with the whole RGB image
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [target])[0], rgb[..., 0] > 100)
    assert mrml.mask_array(scene, segmentation, volume, [keep]).all()  # other segments untouched


def test_slices_along_the_axis_in_model_json(scene, tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"format": "alignflow-segmenter", "slice_axis": 0}))
    voxels = np.zeros((4, 10, 12), np.int16)
    voxels[:, 2:6, 3:5] = 300
    volume = mrml.volume_from_array(scene, voxels, "ct", rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    segmenter = ThresholdSegmenter(100)
    segment_id = mrml.add_segment(segmentation, "lesion")
    mrml.apply_segmenter(scene, volume, segmentation, segment_id, tmp_path, segmenter=segmenter)
    assert segmenter.shapes == [(4, 10)] * 12  # sagittal: one (K, J) slice per column I
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [segment_id]), voxels > 100)


def test_without_model_is_an_error(scene):
    volume = mrml.volume_from_array(scene, np.zeros((2, 4, 4), np.int16), "v", rgb=False)
    with pytest.raises(ValueError, match="exported segmenter"):
        mrml.apply_segmenter(scene, volume, mrml.segmentation_for(scene, volume, "s"), None)


def _exported_segmenter_available() -> bool:
    try:
        from AlignFlowLib.segmenter.export import ExportedSegmenter
    except ImportError:
        return False
    return hasattr(ExportedSegmenter, "load")


def _write_threshold_export(folder, in_channels: int = 1):
    """A known-answer exported segmenter (Testing/known_answer.py): foreground where channel 0 is bright."""
    from known_answer import export_threshold_segmenter

    return export_threshold_segmenter(folder, in_channels=in_channels, image_size_px=32)


needs_export = pytest.mark.skipif(not _exported_segmenter_available(),
                                  reason="AlignFlowLib.segmenter.export.ExportedSegmenter has not landed yet")


@needs_export
def test_real_exported_segmenter_from_a_model_folder(scene, tmp_path):
    """Loaded by the library's own loader, slice by slice along z."""
    _write_threshold_export(tmp_path)
    voxels = np.zeros((2, 32, 32), np.uint8)
    voxels[:, 8:20, 10:24] = 250
    volume = mrml.volume_from_array(scene, voxels, "v", rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, "s")
    segment_id = mrml.add_segment(segmentation, "lesion")
    assert mrml.apply_segmenter(scene, volume, segmentation, segment_id, tmp_path) == int((voxels > 128).sum())
    assert np.array_equal(mrml.mask_array(scene, segmentation, volume, [segment_id]), voxels > 128)


@needs_export
def test_logic_applies_a_run_folders_segmenter_to_an_rgb_image(scene, tmp_path):
    """The module's Apply, end to end with the real CLI: a run folder resolves to RUN/segmenter/exported, the volume
    is segmented in the job process (`segmenter predict`), and the result comes back as a new segment."""
    from AlignFlowLib.runner import run_cli
    from AlignFlowSlicerLib.logic import AlignFlowLogic

    _write_threshold_export(tmp_path / "run" / "segmenter" / "exported", in_channels=3)
    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[5:15, 8:30] = 230
    volume = mrml.volume_from_array(scene, rgb, "frame", rgb=True)
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    logic = AlignFlowLogic(scene, device="cpu")
    args, work = logic.prepare_prediction(tmp_path / "run", volume)
    events: list[dict] = []
    assert run_cli(args, events.append, timeout_s=300) == 0, events[-1]
    assert any(e["event"] == "progress" for e in events)
    segment_id, filled = logic.import_prediction(work, volume, segmentation)
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "AlignFlow lesion"
    result, truth = mrml.mask_array(scene, segmentation, volume, [segment_id])[0], rgb[..., 0] > 128
    assert filled == int(result.sum())
    assert 2 * (result & truth).sum() / (result.sum() + truth.sum()) > 0.95  # 40x24 → 32x32 → back: edge pixels
    assert not work.exists()
