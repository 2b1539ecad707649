"""The MRML bridge against a real MRML scene (slicer-core): nodes → pair folder → nodes, geometry and voxels kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slicer_helpers import ijk_to_ras, require_slicer_core, scene, write_volume_file  # noqa: F401

slicer = require_slicer_core()

import SimpleITK as sitk  # noqa: E402

from AlignFlowLib import mrml  # noqa: E402


def _load_segmentation_from_labelmap(scene, path: Path, reference):
    """As Slicer's "load as segmentation": labelmap file → labelmap node → segmentation (real MRML logic)."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(labelmap)
    segmentation = mrml.segmentation_for(scene, reference, "seg")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    return segmentation


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_scalar_volume_round_trip_keeps_geometry_and_voxels(scene, tmp_path, suffix):
    rng = np.random.default_rng(0)
    voxels = rng.integers(-1000, 1000, (5, 6, 7)).astype(np.int16)  # (z, y, x)
    mask = np.zeros(voxels.shape, np.uint8)
    mask[1:4, 2:5, 1:6] = 1
    original = write_volume_file(tmp_path / f"ct{suffix}", voxels)
    write_volume_file(tmp_path / f"ct_mask{suffix}", mask)

    volume = mrml.read_volume(scene, tmp_path / f"ct{suffix}", "CT chest #1")
    segmentation = _load_segmentation_from_labelmap(scene, tmp_path / f"ct_mask{suffix}", volume)
    folder = mrml.export_pairs(scene, [(volume, segmentation)], tmp_path / "pairs")

    # On disk: the same geometry (LPS) and voxels as the original files; the mask binary and aligned.
    image_file, mask_file = folder / "images" / "CT_chest_1.nrrd", folder / "masks" / "CT_chest_1.nrrd"
    written, written_mask = sitk.ReadImage(str(image_file)), sitk.ReadImage(str(mask_file))
    for other in (written, written_mask):
        assert np.allclose(other.GetSpacing(), original.GetSpacing(), atol=1e-5)
        assert np.allclose(other.GetOrigin(), original.GetOrigin(), atol=1e-5)
        assert np.allclose(other.GetDirection(), original.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(written), voxels)
    assert np.array_equal(sitk.GetArrayFromImage(written_mask), mask)
    assert written_mask.GetPixelID() == sitk.sitkUInt8

    # Back into the scene: same IJK→RAS, voxels and segment.
    _, loaded = mrml.load_pair_folder(scene, folder)
    assert len(loaded) == 1
    assert np.allclose(ijk_to_ras(loaded[0].volume), ijk_to_ras(volume), atol=1e-5)
    assert np.array_equal(mrml.array_from_volume(loaded[0].volume), voxels)
    assert np.array_equal(mrml.mask_array(scene, loaded[0].segmentation, loaded[0].volume), mask.astype(bool))


def test_rgb_image_round_trip(scene, tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    volume = mrml.volume_from_array(scene, rgb, "colonoscopy 7", rgb=True)
    volume.SetSpacing(0.3, 0.4, 1.0)
    volume.SetOrigin(5.0, 6.0, 0.0)
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    mask = np.zeros((20, 30), bool)
    mask[5:12, 3:20] = True
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "polyp"), mask, volume)

    folder = mrml.export_pairs(scene, [(volume, segmentation)], tmp_path / "pairs")
    written = sitk.ReadImage(str(folder / "images" / "colonoscopy_7.nrrd"))
    assert written.GetNumberOfComponentsPerPixel() == 3
    assert np.allclose(written.GetSpacing()[:2], (0.3, 0.4))
    assert np.array_equal(sitk.GetArrayFromImage(written).reshape(20, 30, 3), rgb)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "masks" / "colonoscopy_7.nrrd")))
                          .reshape(20, 30), mask.astype(np.uint8))

    _, loaded = mrml.load_pair_folder(scene, folder)
    back = loaded[0].volume
    assert back.IsA("vtkMRMLVectorVolumeNode")
    assert np.allclose(ijk_to_ras(back), ijk_to_ras(volume), atol=1e-5)
    assert np.array_equal(mrml.array_from_volume(back)[0], rgb)
    assert np.array_equal(mrml.mask_array(scene, loaded[0].segmentation, back)[0], mask)


def test_pair_folder_is_readable_by_the_library(scene, tmp_path):
    from AlignFlowLib.config import DataConfig
    from AlignFlowLib.data.folders import load_pairs, load_references

    voxels = (np.arange(4 * 16 * 16).reshape(4, 16, 16) % 200).astype(np.int16)
    write_volume_file(tmp_path / "v.nrrd", voxels)
    volume = mrml.read_volume(scene, tmp_path / "v.nrrd")
    segmentation = mrml.segmentation_for(scene, volume, "seg")
    mask = np.zeros(voxels.shape, bool)
    mask[1:3, 4:10, 4:10] = True
    mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "organ"), mask, volume)
    pairs = mrml.export_pairs(scene, [(volume, segmentation)], tmp_path / "pairs")
    refs = mrml.export_references(scene, [volume], tmp_path / "refs")

    config = DataConfig(image_size_px=16, channels=1)
    loaded = load_pairs(pairs, config)
    assert len(loaded) == 2  # the two slices with foreground
    assert loaded.masks.sum() == mask.sum()
    assert len(load_references(refs, config)) == 4


def test_generated_pairs_load_into_a_subject_hierarchy_folder(scene, tmp_path):
    folder = tmp_path / "synthetic"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(2)
    images, masks = {}, {}
    for index in (1, 2, 10):  # natural order: 1, 2, 10
        name = f"synthetic_{index}"
        images[name] = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        masks[name] = np.zeros((24, 32), np.uint8)
        masks[name][4:4 + index, 5:15] = 255
        Image.fromarray(images[name]).save(folder / "images" / f"{name}.png")
        Image.fromarray(masks[name]).save(folder / "masks" / f"{name}.png")
    (folder / "manifest.json").write_text(json.dumps({"labels": ["polyp"], "num_pairs": 3}))

    pairs = mrml.load_generated_pairs(scene, folder, "AlignFlow synthetic")
    hierarchy = scene.GetSubjectHierarchyNode()
    item = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), "AlignFlow synthetic")
    assert item and hierarchy.GetNumberOfItemChildren(item) == 6
    assert [volume.GetName() for volume, _ in pairs] == ["synthetic_1", "synthetic_2", "synthetic_10"]
    for volume, segmentation in pairs:
        name = volume.GetName()
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(volume)) == item
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation)) == item
        assert volume.IsA("vtkMRMLVectorVolumeNode")
        assert np.array_equal(mrml.array_from_volume(volume)[0], images[name])
        segments = segmentation.GetSegmentation()
        assert segments.GetNumberOfSegments() == 1 and segments.GetNthSegment(0).GetName() == "polyp"
        assert np.array_equal(mrml.mask_array(scene, segmentation, volume)[0], masks[name] > 0)
        display = segmentation.GetDisplayNode()
        assert display.GetVisibility2DOutline() and not display.GetVisibility2DFill()
    assert len(mrml.load_generated_pairs(scene, folder, "first two", max_pairs=2)) == 2


def test_grey_generated_pairs_become_scalar_volumes(scene, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(grey).save(tmp_path / "images" / "g.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "g.png")
    [(volume, segmentation)] = mrml.load_generated_pairs(scene, tmp_path, "grey")
    assert volume.IsA("vtkMRMLScalarVolumeNode") and not volume.IsA("vtkMRMLVectorVolumeNode")
    assert np.array_equal(mrml.array_from_volume(volume)[0], grey)
    assert mrml.mask_array(scene, segmentation, volume)[0].sum() == 24


def test_missing_pairs_are_reported(scene, tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="no image/mask pairs"):
        mrml.load_pair_folder(scene, tmp_path)
    with pytest.raises(ValueError, match="no \\(volume, segmentation\\) pairs"):
        mrml.export_pairs(scene, [], tmp_path / "out")
