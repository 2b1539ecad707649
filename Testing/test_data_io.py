"""Data layer I/O: formats, volumes, letterbox geometry, intensity and mask rules, pair/reference folders, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from AlignFlowLib.config import DataConfig
from AlignFlowLib.data import (ImageSet, Letterbox, PairSet, load_pairs, load_references, prepare_image, prepare_mask,
                               read_image, read_slices, undo_letterbox, write_images, write_pairs)
from AlignFlowLib.data.folders import natural_key
from AlignFlowLib.data.io import (IMAGE_SUFFIXES, VOLUME_SUFFIXES, binarize_mask, file_stem, normalize_intensity,
                                  to_uint8, write_png)
from AlignFlowLib.errors import InputDataError

RNG = np.random.default_rng(0)


def _save_itk(array: np.ndarray, path: Path, is_vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    sitk.WriteImage(image, str(path))
    return path


def _square_mask(height: int = 20, width: int = 20) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    return mask


def _pair_folder(root: Path, stems=("case0", "case1"), image_hw=(20, 20), mask_hw=None, image_suffix=".jpg") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in stems:
        picture = Image.fromarray(RNG.integers(0, 255, (*image_hw, 3), dtype=np.uint8))
        picture.save(root / "images" / f"{stem}{image_suffix}")
        Image.fromarray(_square_mask(*(mask_hw or image_hw))).save(root / "masks" / f"{stem}.png")
    return root


# Reading files.

def test_suffix_tables_and_stems():
    assert ".png" in IMAGE_SUFFIXES and ".nii.gz" in VOLUME_SUFFIXES
    assert file_stem(Path("a/ct.nii.gz")) == "ct" and file_stem(Path("x.1.png")) == "x.1"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_2d_formats_round_trip(tmp_path, suffix, channels):
    # Smooth content so that JPEG stays close to the original.
    yy, xx = np.mgrid[0:24, 0:36]
    grey = (yy * 6 + xx * 3).astype(np.uint8)
    array = grey if channels == 1 else np.stack([grey, 255 - grey, grey // 2], axis=2)
    Image.fromarray(array).save(tmp_path / f"x{suffix}")
    loaded = read_image(tmp_path / f"x{suffix}")
    assert loaded.shape == (24, 36, channels) and loaded.dtype == np.uint8
    error = np.abs(loaded.astype(int) - array.reshape(loaded.shape).astype(int))
    assert error.max() == 0 if suffix != ".jpg" else error.mean() < 4


def test_rgba_palette_and_16_bit(tmp_path):
    rgba = RNG.integers(0, 255, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    palette = Image.fromarray(RNG.integers(0, 255, (8, 9, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (8, 9, 3)
    deep = (np.arange(72, dtype=np.uint16).reshape(8, 9) * 900)
    Image.fromarray(deep).save(tmp_path / "d.png")
    loaded = read_image(tmp_path / "d.png")
    assert loaded.dtype == np.uint16 and np.array_equal(loaded[..., 0], deep)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_single_slice_volume_and_2d_vector_read_as_images(tmp_path, suffix):
    plane = RNG.integers(0, 1000, (7, 9)).astype(np.int16)
    path = _save_itk(plane[None], tmp_path / f"s{suffix}")  # a (1, 7, 9) volume: one z slice
    loaded = read_image(path)
    assert loaded.shape == (7, 9, 1) and loaded.dtype == np.int16 and np.array_equal(loaded[..., 0], plane)
    assert len(read_slices(path, 0)) == 1
    rgb = RNG.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    vector = _save_itk(rgb, tmp_path / f"rgb{suffix}", is_vector=True)
    assert np.array_equal(read_image(vector), rgb)


def test_3d_volume_is_sliced_along_each_axis(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # numpy (z, y, x)
    path = _save_itk(volume, tmp_path / "v.nrrd")
    along_z, along_x = read_slices(path, 2), read_slices(path, 0)
    assert len(along_z) == 4 and np.array_equal(along_z[1][..., 0], volume[1])
    assert len(along_x) == 6 and np.array_equal(along_x[2][..., 0], volume[:, :, 2])
    assert len(read_slices(path, 1)) == 5
    with pytest.raises(InputDataError, match="is a 3-D volume;") as error:
        read_image(path)
    assert "v.nrrd" in str(error.value)


def test_2d_file_gives_one_slice(tmp_path):
    Image.fromarray(_square_mask()).save(tmp_path / "m.png")
    slices = read_slices(tmp_path / "m.png", 2)
    assert len(slices) == 1 and slices[0].shape == (20, 20, 1)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_file_is_a_one_line_error_naming_it(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputDataError, match="cannot be read as an image") as error:
        read_image(path)
    assert "broken.png" in str(error.value) and "\n" not in str(error.value)
    (tmp_path / "broken.nrrd").write_bytes(content)
    with pytest.raises(InputDataError, match="broken.nrrd: cannot be read as an image"):
        read_slices(tmp_path / "broken.nrrd", 2)


# Geometry and intensities.

def test_letterbox_geometry_padding_and_undo():
    mask = np.zeros((40, 80), np.uint8)
    mask[10:30, 20:60] = 1
    working, box = prepare_image(mask * 255, 32, 1, "letterbox")
    assert box == Letterbox((40, 80), 0.4, (8, 0), (16, 32), "letterbox")
    assert working.shape == (1, 32, 32) and working.dtype == np.float32
    assert np.all(working[0, :8] == -1) and np.all(working[0, -8:] == -1) and working[0, 16, 16] > 0.9
    working_mask = prepare_mask(mask, 32, "letterbox")
    assert working_mask.shape == (1, 32, 32) and set(np.unique(working_mask)) == {0.0, 1.0}
    assert working_mask[0, :8].sum() == 0
    restored = undo_letterbox(working_mask[0], box)
    assert restored.shape == (40, 80) and (restored == mask.astype(bool)).mean() > 0.97


def test_crop_and_stretch_geometry():
    image = np.zeros((40, 80), np.uint8)
    image[:, 30:50] = 255  # a central stripe survives a centre crop
    working, box = prepare_image(image, 20, 3, "crop")
    assert box.resized_hw == (20, 40) and box.offset_yx == (0, -10) and working.shape == (3, 20, 20)
    assert working[:, :, 10].min() > 0.9 and working[:, :, 0].max() < -0.9
    restored = undo_letterbox(working[0] > 0, box)
    assert restored.shape == (40, 80) and restored[:, 35:45].all() and not restored[:, :20].any()
    _, stretched = prepare_image(image, 20, 3, "stretch")
    assert stretched.resized_hw == (20, 20) and stretched.offset_yx == (0, 0)
    with pytest.raises(Exception, match="letterbox, stretch"):
        prepare_image(image, 20, 3, "zoom")


def test_channel_conversion():
    grey = np.full((10, 10), 200, np.uint8)
    rgb, _ = prepare_image(grey, 8, 3)
    assert rgb.shape == (3, 8, 8) and np.allclose(rgb[0], rgb[1]) and np.allclose(rgb[1], rgb[2])
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    luminance, _ = prepare_image(red, 8, 1, "stretch")
    assert luminance.shape == (1, 8, 8) and np.allclose(luminance, 0.299 * 1 + 0.701 * -1, atol=1e-5)


def test_downsampling_is_antialiased():
    stripes = np.zeros((64, 64), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid-grey, not to aliasing bands
    working, _ = prepare_image(stripes, 16, 1)
    assert np.abs(working).max() < 0.1


def test_normalisation_rules():
    assert normalize_intensity(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]
    ct = np.linspace(-1000, 3000, 10_000).astype(np.int16)
    ct[:3] = -30_000  # outliers must not squash the window
    scaled = normalize_intensity(ct)
    assert scaled.dtype == np.float32 and scaled.min() == -1 and scaled.max() == 1
    assert abs(float(np.median(scaled))) < 0.05 and np.mean(np.abs(scaled) < 1) > 0.98
    assert np.all(normalize_intensity(np.full((4, 4), 7.5, np.float32)) == 0)


def test_to_uint8_and_write_png(tmp_path):
    image = np.stack([np.full((4, 5), value, np.float32) for value in (-1.0, 0.0, 1.0)])
    pixels = to_uint8(image)
    assert pixels.shape == (4, 5, 3) and pixels[0, 0].tolist() == [0, 128, 255]
    write_png(tmp_path / "x.png", pixels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), pixels)


# Mask rules.

@pytest.mark.parametrize("levels", [(0, 1), (0, 255), (3, 7)])
def test_two_level_masks_take_the_higher_level(levels):
    mask = np.where(_square_mask() > 0, levels[1], levels[0]).astype(np.uint8)
    assert np.array_equal(binarize_mask(mask), _square_mask() > 0)


def test_single_level_masks():
    assert not binarize_mask(np.zeros((5, 5), np.uint8)).any()
    assert binarize_mask(np.full((5, 5), 255, np.uint8)).all()


def test_rgb_mask_uses_channel_maximum():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 1] = _square_mask()
    assert np.array_equal(binarize_mask(rgb), _square_mask() > 0)


def test_jpeg_mask_is_binarised_with_a_warning(tmp_path, caplog):
    mask = np.zeros((48, 48), np.uint8)
    yy, xx = np.mgrid[0:48, 0:48]
    mask[(yy - 24) ** 2 + (xx - 20) ** 2 < 144] = 255
    root = tmp_path / "jpeg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(RNG.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.jpg", quality=70)
    assert len(np.unique(np.asarray(Image.open(root / "masks" / "a.jpg")))) > 2  # really noisy
    with caplog.at_level(logging.WARNING):
        pairs = load_pairs(root, DataConfig(image_size_px=48, channels=3))
    assert "a.jpg" in caplog.text and "not exactly binary" in caplog.text
    assert (pairs.masks[0, 0].numpy().astype(bool) == (mask > 0)).mean() > 0.99


def test_multi_label_mask_is_rejected(tmp_path):
    labels = np.repeat(np.array([0, 1, 2], np.uint8), 100).reshape(10, 30)
    with pytest.raises(InputDataError, match=r"has 3 labels \(0, 1, 2\); a binary mask is expected") as error:
        binarize_mask(labels, tmp_path / "labels.png")
    assert "labels.png" in str(error.value)


def test_grey_picture_as_mask_is_rejected():
    with pytest.raises(InputDataError, match="a binary mask is expected"):
        binarize_mask(np.tile(np.arange(256, dtype=np.uint8), (16, 1)), Path("photo.png"))


# Folders.

def test_pairs_match_by_stem_across_extensions_in_natural_order(tmp_path):
    root = _pair_folder(tmp_path / "p", stems=("10", "2", "1"))
    (root / "masks" / "orphan.png").write_bytes((root / "masks" / "1.png").read_bytes())
    (root / "images" / "notes.txt").write_text("ignored")
    pairs = load_pairs(root, DataConfig(image_size_px=16))
    assert isinstance(pairs, PairSet) and len(pairs) == 3 and pairs.names == ["1", "2", "10"]
    assert pairs.images.shape == (3, 3, 16, 16) and pairs.masks.shape == (3, 1, 16, 16)
    assert pairs.images.dtype == torch.float32 and -1 <= pairs.images.min() and pairs.images.max() <= 1
    assert set(pairs.masks.unique().tolist()) == {0.0, 1.0}
    grey = load_pairs(root, DataConfig(image_size_px=8, channels=1), ids=["10", "1"])
    assert grey.names == ["10", "1"] and grey.images.shape == (2, 1, 8, 8)


def test_natural_key():
    assert sorted(["img10", "img2", "IMG1", "a"], key=natural_key) == ["a", "IMG1", "img2", "img10"]


def test_orphan_masks_are_logged(tmp_path, caplog):
    root = _pair_folder(tmp_path / "p", stems=("a",))
    Image.fromarray(_square_mask()).save(root / "masks" / "lonely.png")
    with caplog.at_level(logging.WARNING):
        assert load_pairs(root, DataConfig(image_size_px=8)).names == ["a"]
    assert "lonely.png" in caplog.text


def _expect(message: str, name: str, call) -> None:
    with pytest.raises(InputDataError, match=message) as error:
        call()
    assert name in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_folder_errors_name_the_path(tmp_path):
    config = DataConfig(image_size_px=16)
    _expect("not found", "missing", lambda: load_pairs(tmp_path / "missing", config))
    (tmp_path / "no_images" / "masks").mkdir(parents=True)
    _expect("images/ subfolder not found", "no_images", lambda: load_pairs(tmp_path / "no_images", config))
    (tmp_path / "no_masks" / "images").mkdir(parents=True)
    _expect("masks/ subfolder not found", "no_masks", lambda: load_pairs(tmp_path / "no_masks", config))
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    _expect("no images found", "empty", lambda: load_pairs(tmp_path / "empty", config))

    unpaired = _pair_folder(tmp_path / "unpaired", stems=("a", "b"))
    (unpaired / "masks" / "b.png").unlink()
    _expect(r"no mask for this image \(expected masks/b\.\*\)", "b.jpg", lambda: load_pairs(unpaired, config))

    sizes = _pair_folder(tmp_path / "sizes", stems=("x",), image_hw=(400, 512), mask_hw=(400, 510))
    _expect("image is 512x400 but its mask masks/x.png is 510x400", "x.jpg", lambda: load_pairs(sizes, config))

    broken = _pair_folder(tmp_path / "broken", stems=("a",))
    (broken / "masks" / "a.png").write_bytes(b"garbage")
    _expect("cannot be read as an image", "a.png", lambda: load_pairs(broken, config))

    labelled = _pair_folder(tmp_path / "labelled", stems=("a",))
    Image.fromarray(np.repeat(np.array([0, 1, 2, 3], np.uint8), 100).reshape(20, 20)).save(labelled / "masks" / "a.png")
    _expect("labels .*a binary mask is expected", "a.png", lambda: load_pairs(labelled, config))

    _expect("no image for id 'zz'", "images", lambda: load_pairs(_pair_folder(tmp_path / "ids"), config, ids=["zz"]))

    twins = _pair_folder(tmp_path / "twins", stems=("a",))
    Image.fromarray(_square_mask()).save(twins / "masks" / "a.bmp")
    _expect("same name", "masks", lambda: load_pairs(twins, config))


def test_volume_pairs_skip_empty_slices_unless_asked(tmp_path):
    root = tmp_path / "vol"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = RNG.normal(size=(4, 12, 10)).astype(np.float32)
    mask = np.zeros((4, 12, 10), np.uint8)
    mask[1, 3:9, 3:8] = 1
    mask[3, 2:6, 2:6] = 1
    _save_itk(image, root / "images" / "ct.nii.gz")
    _save_itk(mask, root / "masks" / "ct.nrrd")
    pairs = load_pairs(root, DataConfig(image_size_px=16, channels=1))
    assert pairs.names == ["ct_s001", "ct_s003"] and pairs.masks.sum((1, 2, 3)).min() > 0
    kept = load_pairs(root, DataConfig(image_size_px=16, channels=1, keep_empty_slices=True))
    assert kept.names == ["ct_s000", "ct_s001", "ct_s002", "ct_s003"] and kept.masks[0].sum() == 0
    along_x = load_pairs(root, DataConfig(image_size_px=16, channels=1, slice_axis=0))
    assert along_x.names == [f"ct_s{x:03d}" for x in range(2, 8)]  # mask voxels lie at x = 2..7

    _save_itk(np.zeros((4, 12, 10), np.uint8), root / "masks" / "ct.nrrd")
    _expect("every slice has an empty mask", "vol", lambda: load_pairs(root, DataConfig(image_size_px=16)))
    _save_itk(np.zeros((3, 12, 10), np.uint8), root / "masks" / "ct.nrrd")
    _expect("image is 10x12x4 but its mask masks/ct.nrrd is 10x12x3", "ct.nii.gz",
            lambda: load_pairs(root, DataConfig(image_size_px=16)))


def test_references_from_images_subfolder_or_directly(tmp_path):
    config = DataConfig(image_size_px=16, channels=3)
    for index in (3, 1):
        Image.fromarray(RNG.integers(0, 255, (20, 30), dtype=np.uint8)).save(tmp_path / f"r{index}.png")
    direct = load_references(tmp_path, config)
    assert isinstance(direct, ImageSet) and direct.names == ["r1", "r3"] and direct.images.shape == (2, 3, 16, 16)
    nested = tmp_path / "nested" / "images"
    nested.mkdir(parents=True)
    _save_itk(RNG.normal(size=(3, 8, 8)).astype(np.float32), nested / "vol.mha")
    assert load_references(tmp_path / "nested", config).names == ["vol_s000", "vol_s001", "vol_s002"]
    (tmp_path / "none").mkdir()
    _expect("no reference images found", "none", lambda: load_references(tmp_path / "none", config))
    _expect("not found", "absent", lambda: load_references(tmp_path / "absent", config))


@pytest.mark.parametrize("channels", [1, 3])
def test_write_pairs_round_trip(tmp_path, channels):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, channels, 16, 16, generator=generator) * 2 - 1
    masks = (torch.rand(5, 1, 16, 16, generator=generator) > 0.5).float()
    names = [f"syn{k}" for k in range(5)]
    folder = write_pairs(tmp_path / "out", images, masks, names, manifest={"seed": 0, "names": names})
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 0
    assert np.unique(np.asarray(Image.open(folder / "masks" / "syn0.png"))).tolist() == [0, 255]
    loaded = load_pairs(folder, DataConfig(image_size_px=16, channels=channels))
    assert loaded.names == names
    assert torch.equal(loaded.masks, masks)
    assert (loaded.images - images).abs().max() <= 1 / 127.5 + 1e-6
    write_images(tmp_path / "refs" / "images", images, names)
    assert load_references(tmp_path / "refs", DataConfig(image_size_px=16, channels=channels)).names == names
