"""Data layer: formats, letterbox geometry, mask rules, folder errors, phantoms."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from AlignFlowLib.config import DataConfig
from AlignFlowLib.data import (load_pairs, load_references, make_phantom_pairs, prepare_image, prepare_mask,
                               read_image, read_slices, undo_letterbox)
from AlignFlowLib.data.folders import natural_key
from AlignFlowLib.data.io import binarize_mask, normalize_intensity
from AlignFlowLib.errors import InputDataError


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_2d_formats_round_trip(tmp_path, suffix, mode):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (20, 30, 3) if mode == "RGB" else (20, 30), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / f"x{suffix}")
    loaded = read_image(tmp_path / f"x{suffix}")
    assert loaded.shape == (20, 30, 3 if mode == "RGB" else 1)
    assert loaded.dtype == np.uint8
    if suffix != ".jpg":
        assert np.array_equal(loaded.reshape(array.shape), array)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_volume_slices_along_each_axis(tmp_path, suffix):
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # numpy (z, y, x)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / f"v{suffix}"))
    assert len(read_slices(tmp_path / f"v{suffix}", 2)) == 4
    assert read_slices(tmp_path / f"v{suffix}", 2)[1].shape == (5, 6, 1)
    assert len(read_slices(tmp_path / f"v{suffix}", 0)) == 6
    assert np.array_equal(read_slices(tmp_path / f"v{suffix}", 0)[2][..., 0], volume[:, :, 2])
    with pytest.raises(InputDataError, match="3-D volume"):
        read_image(tmp_path / f"v{suffix}")


def test_single_slice_nrrd_reads_as_2d(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((1, 7, 9), np.uint8)), str(tmp_path / "s.nrrd"))
    assert read_image(tmp_path / "s.nrrd").shape == (7, 9, 1)


def test_letterbox_pads_keeps_aspect_and_undoes():
    mask = np.zeros((40, 80), np.uint8)
    mask[10:30, 20:60] = 1
    working, box = prepare_image(mask * 255, 32, 1, "letterbox")
    assert box.resized_hw == (16, 32) and box.offset_yx == (8, 0)
    assert np.all(working[0, :8] == -1) and np.all(working[0, -8:] == -1)
    working_mask = prepare_mask(mask, 32, "letterbox")[0]
    restored = undo_letterbox(working_mask, box)
    assert restored.shape == (40, 80)
    assert (restored == mask.astype(bool)).mean() > 0.97


def test_normalisation_ranges():
    assert normalize_intensity(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]
    ct = np.linspace(-1000, 3000, 10_000).astype(np.int16)
    scaled = normalize_intensity(ct)
    assert scaled.min() == -1 and scaled.max() == 1 and abs(float(np.median(scaled))) < 0.05


def test_near_binary_mask_is_binarised_with_a_warning(tmp_path, caplog):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    noisy = mask.astype(int) + np.random.default_rng(0).integers(-3, 4, mask.shape)
    with caplog.at_level(logging.WARNING):
        out = binarize_mask(np.clip(noisy, 0, 255).astype(np.uint8), tmp_path / "m.jpg")
    assert np.array_equal(out, mask > 0)
    assert "m.jpg" in caplog.text


def test_multi_label_mask_is_rejected(tmp_path):
    labels = np.repeat(np.array([0, 1, 2, 3], np.uint8), 16).reshape(8, 8)
    with pytest.raises(InputDataError, match="binary mask is expected") as error:
        binarize_mask(labels, tmp_path / "labels.png")
    assert "labels.png" in str(error.value)


def _pairs(root, sizes=((20, 20), (20, 20)), mask_sizes=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, size in enumerate(sizes):
        Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(root / "images" / f"case{index}.jpg")
        mask = np.zeros(mask_sizes[index] if mask_sizes else size, np.uint8)
        mask[2:8, 2:8] = 255
        Image.fromarray(mask).save(root / "masks" / f"case{index}.png")
    return root


def test_pairs_match_by_stem_across_extensions(tmp_path):
    pairs = load_pairs(_pairs(tmp_path / "p"), DataConfig(image_size_px=16))
    assert pairs.names == ["case0", "case1"]
    assert pairs.images.shape == (2, 3, 16, 16) and pairs.masks.shape == (2, 1, 16, 16)
    assert set(pairs.masks.unique().tolist()) == {0.0, 1.0}
    assert pairs.images.min() >= -1 and pairs.images.max() <= 1


def test_folder_errors_name_the_file(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        load_pairs(tmp_path / "missing", DataConfig())
    root = _pairs(tmp_path / "a", sizes=((20, 20), (20, 24)), mask_sizes=((20, 20), (20, 20)))
    with pytest.raises(InputDataError, match="case1.jpg.*image is 24x20"):
        load_pairs(root, DataConfig(image_size_px=16))
    (tmp_path / "refs").mkdir()
    with pytest.raises(InputDataError, match="no reference images"):
        load_references(tmp_path / "refs", DataConfig())


def test_volume_pairs_skip_empty_slices_unless_asked(tmp_path):
    (tmp_path / "v" / "images").mkdir(parents=True)
    (tmp_path / "v" / "masks").mkdir()
    image = np.random.default_rng(0).normal(size=(3, 12, 12)).astype(np.float32)
    mask = np.zeros((3, 12, 12), np.uint8)
    mask[1, 3:9, 3:9] = 1
    for array, folder in ((image, "images"), (mask, "masks")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing((0.7, 0.7, 2.5))
        sitk.WriteImage(itk, str(tmp_path / "v" / folder / "ct.nrrd"))
    assert load_pairs(tmp_path / "v", DataConfig(image_size_px=16, channels=1)).names == ["ct_s001"]
    kept = load_pairs(tmp_path / "v", DataConfig(image_size_px=16, channels=1, keep_empty_slices=True))
    assert kept.names == ["ct_s000", "ct_s001", "ct_s002"]


def test_natural_sort():
    assert sorted(["10", "2", "1"], key=natural_key) == ["1", "2", "10"]


def test_phantoms_are_deterministic_and_domains_share_masks():
    source_a, masks_a = make_phantom_pairs("source", 6, 32, seed=3)
    source_b, masks_b = make_phantom_pairs("source", 6, 32, seed=3)
    target, masks_t = make_phantom_pairs("target", 6, 32, seed=3)
    assert np.array_equal(source_a, source_b) and np.array_equal(masks_a, masks_b)
    assert np.array_equal(masks_a, masks_t)
    colour_gap = np.abs(source_a.reshape(-1, 3).mean(0) - target.reshape(-1, 3).mean(0))
    assert colour_gap.max() > 25          # a clear colour cast between the domains (uint8 levels)
    area = masks_a.reshape(6, -1).mean(1)
    assert np.all(area > 0.02) and np.all(area < 0.5)
    assert not np.array_equal(make_phantom_pairs("source", 1, 32, seed=4)[1], masks_a[:1])
