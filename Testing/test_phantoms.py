"""Phantom domains: deterministic, same masks in both domains, a clear but learnable domain gap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from AlignFlowLib.config import DataConfig
from AlignFlowLib.data import PhantomPaths, load_pairs, load_references, make_phantom_pairs, write_phantom_dataset
from AlignFlowLib.errors import AlignFlowError


@pytest.fixture(scope="module")
def domains():
    source, masks = make_phantom_pairs("source", 100, 64, seed=3)
    target, target_masks = make_phantom_pairs("target", 100, 64, seed=3)
    return source, masks, target, target_masks


def test_shapes_dtypes_and_binary_masks(domains):
    source, masks, target, _ = domains
    assert source.shape == target.shape == (100, 64, 64, 3) and source.dtype == target.dtype == np.uint8
    assert masks.shape == (100, 64, 64) and masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}


def test_deterministic_per_seed():
    first = make_phantom_pairs("target", 4, 32, seed=7)
    again = make_phantom_pairs("target", 4, 32, seed=7)
    other = make_phantom_pairs("target", 4, 32, seed=8)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1]) and not np.array_equal(first[0], other[0])
    # Pair k depends on (seed, k) only, not on how many pairs are asked for.
    assert np.array_equal(make_phantom_pairs("target", 2, 32, seed=7)[0], first[0][:2])


def test_domains_share_masks_but_not_colour(domains):
    source, masks, target, target_masks = domains
    assert np.array_equal(masks, target_masks)
    source_mean, target_mean = source.reshape(-1, 3).mean(0), target.reshape(-1, 3).mean(0)
    assert np.abs(source_mean - target_mean).max() > 25  # a clear colour cast (uint8 levels)
    # Source tissue is red-dominant; the target scope's cast makes it much bluer relative to red.
    assert source_mean[0] > source_mean[1] + 40
    assert target_mean[2] / target_mean[0] > 1.4 * source_mean[2] / source_mean[0]


def test_target_has_vignetting_and_lower_contrast(domains):
    source, _, target, _ = domains

    def centre_over_corner(images):
        grey = images.astype(np.float32).mean(-1)
        return grey[:, 24:40, 24:40].mean() / grey[:, [0, 0, -1, -1], [0, -1, 0, -1]].mean()

    assert centre_over_corner(target) > 1.3 * centre_over_corner(source)
    def centre_contrast(images):  # coefficient of variation away from the vignetted border
        grey = images.astype(np.float32).mean(-1)[:, 16:48, 16:48]
        return np.median(grey.std((1, 2)) / grey.mean((1, 2)))

    assert centre_contrast(target) < 0.8 * centre_contrast(source)


def _lesion_contrast(images, masks):
    """Per image: (mean grey inside the lesion - mean in a 4-pixel ring around it) / ring mean."""
    contrasts = []
    for image, mask in zip(images.astype(np.float32).mean(-1), masks.astype(bool)):
        ring = ndimage.binary_dilation(mask, iterations=4) & ~mask
        contrasts.append((image[mask].mean() - image[ring].mean()) / image[ring].mean())
    return np.array(contrasts)


def test_lesions_are_brighter_and_still_visible_in_target(domains):
    source, masks, target, _ = domains
    source_contrast, target_contrast = _lesion_contrast(source, masks), _lesion_contrast(target, masks)
    assert np.median(source_contrast) > 0.1 and np.mean(source_contrast > 0.03) > 0.9
    assert np.median(target_contrast) > 0.05 and np.mean(target_contrast > 0.03) > 0.9
    assert np.median(target_contrast) < np.median(source_contrast)  # subtler in the target domain


def test_lesion_area_fractions(domains):
    _, masks, _, _ = domains
    area = masks.reshape(len(masks), -1).mean(1)
    assert area.min() > 0.04 and area.max() < 0.28
    assert 0.08 < np.median(area) < 0.2  # a spread of sizes, not one size


def test_invalid_domain_names_the_choices():
    with pytest.raises(AlignFlowError, match="source, target"):
        make_phantom_pairs("scanner", 1, 32, seed=0)


def test_write_phantom_dataset(tmp_path):
    paths = write_phantom_dataset(tmp_path, size_px=32, num_source=6, num_references=3, num_target_test=4, seed=1)
    assert isinstance(paths, PhantomPaths)
    assert paths.source == tmp_path / "source" and paths.references == tmp_path / "target_references"
    assert len(list((paths.references / "images").glob("*.png"))) == 3
    config = DataConfig(image_size_px=32, channels=3)
    source, test = load_pairs(paths.source, config), load_pairs(paths.target_test, config)
    references = load_references(paths.references, config)
    assert (len(source), len(references), len(test)) == (6, 3, 4)
    # Each set has its own seed: no scene repeats across them.
    assert not any(np.array_equal(a, b) for a in source.masks.numpy() for b in test.masks.numpy())
    assert not any(np.array_equal(a, b) for a in references.images.numpy() for b in test.images.numpy())
