"""Data-level baselines: histogram matching, Fourier domain adaptation, classic augmentation."""

from __future__ import annotations

import pytest
import torch

from AlignFlowLib.baselines.augment import classic_augment
from AlignFlowLib.baselines.fda import fourier_domain_adaptation
from AlignFlowLib.baselines.histogram import match_histograms


def _rand(shape, seed, low=-1.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g)


# ---------------------------------------------------------------- histogram matching


def test_histogram_matching_matches_reference_statistics():
    images = _rand((3, 3, 32, 32), 0, -0.9, 0.1)                       # dark, low contrast
    references = torch.stack([_rand((3, 32, 32), 1, -0.2, 0.9), _rand((3, 32, 32), 2, -0.2, 0.9)])
    references[:, 1] = references[:, 1] ** 2                            # a skewed channel
    matched = match_histograms(images, references)
    assert matched.shape == images.shape and matched.min() >= -1 and matched.max() <= 1
    for c in range(3):
        assert abs(float(matched[:, c].mean() - references[:, c].mean())) < 0.02
        assert abs(float(matched[:, c].std() - references[:, c].std())) < 0.02


def test_histogram_matching_is_identity_on_a_reference_and_keeps_padding():
    reference = _rand((1, 3, 24, 24), 3, -0.8, 0.8)
    assert torch.allclose(match_histograms(reference, reference), reference, atol=1e-6)
    padded = _rand((1, 3, 24, 24), 4, -0.5, 0.0)
    padded[..., :4, :] = -1.0                                           # letterbox bars
    matched = match_histograms(padded, reference)
    assert (matched[..., :4, :] == -1.0).all()
    assert abs(float(matched[..., 4:, :].mean() - reference.mean())) < 0.03


# ---------------------------------------------------------------- FDA


def test_fda_beta_zero_is_identity():
    images, references = _rand((2, 3, 32, 32), 0), _rand((3, 3, 32, 32), 1)
    assert torch.equal(fourier_domain_adaptation(images, references, beta=0.0), images)


def test_fda_low_frequency_amplitude_is_the_references():
    images = _rand((2, 1, 32, 32), 0, -0.3, 0.3)
    reference = _rand((1, 1, 32, 32), 1, -0.3, 0.3) + 0.2
    out = fourier_domain_adaptation(images, reference, beta=0.1, seed=3)
    assert out.abs().max() < 1.0                                        # nothing clipped: the spectrum is exact
    b, c = 3, 16                                                        # floor(0.1 · 32), centre after fftshift
    spectrum = lambda x: torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))
    low = (..., slice(c - b, c + b + 1), slice(c - b, c + b + 1))
    got, ref, src = spectrum(out), spectrum(reference), spectrum(images)
    assert torch.allclose(got.abs()[low], ref.abs()[low].expand_as(got.abs()[low]), atol=1e-3)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[c - b:c + b + 1, c - b:c + b + 1] = False
    assert torch.allclose(got[..., outside], src[..., outside], atol=1e-3)   # high frequencies untouched
    assert abs(float(out.mean() - reference.mean())) < 1e-3              # DC (mean brightness) transferred
    again = fourier_domain_adaptation(images, reference, beta=0.1, seed=3)
    assert torch.equal(out, again)


# ---------------------------------------------------------------- classic augmentation


def test_augmentation_keeps_image_and_mask_aligned_and_in_range():
    n, size = 12, 32
    images = torch.full((n, 3, size, size), -0.8)
    masks = torch.zeros(n, 1, size, size)
    images[:, :, 2:10, 20:30] = 0.8                                     # bright, off-centre rectangle
    masks[:, :, 2:10, 20:30] = 1.0
    generator = torch.Generator().manual_seed(0)
    out_images, out_masks = classic_augment(images, masks, generator)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.min() >= -1 and out_images.max() <= 1
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    moved = 0
    for image, mask in zip(out_images, out_masks):
        grey = image.mean(0)
        bright = grey > (grey.max() + grey.min()) / 2
        assert (bright == mask[0].bool()).float().mean() > 0.95
        assert bright[mask[0].bool()].float().mean() > 0.8                  # the square itself is where the mask is
        moved += int(not torch.equal(mask, masks[0]))
    assert moved > 0                                                    # some geometric transform happened
    assert not torch.equal(out_images, classic_augment(images, masks, torch.Generator().manual_seed(1))[0])


def test_augmentation_reproducible_and_grey():
    images, masks = _rand((4, 1, 16, 24), 0), (_rand((4, 1, 16, 24), 1) > 0).float()
    a = classic_augment(images, masks, torch.Generator().manual_seed(5))
    b = classic_augment(images, masks, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == images.shape and a[0].min() >= -1 and a[0].max() <= 1


@pytest.mark.parametrize("shape", [(6, 3, 24, 24), (5, 1, 16, 24)])
def test_augmenting_the_batch_at_once_gives_the_same_transforms_as_one_pair_at_a_time(shape):
    """The GPU path (all at once) and the CPU path (one pair at a time) read the same draws from a seed; on the CPU
    even the pixel noise is the same, so only rounding may differ. Several seeds, so blurred and flipped, turned and
    kept pairs all occur."""
    images = _rand(shape, 0)
    masks = (_rand((shape[0], 1, *shape[2:]), 1) > 0).float()
    for seed in range(6):
        one = classic_augment(images, masks, torch.Generator().manual_seed(seed), all_at_once=False)
        batch = classic_augment(images, masks, torch.Generator().manual_seed(seed), all_at_once=True)
        assert torch.equal(one[1], batch[1])
        assert torch.allclose(one[0], batch[0], atol=1e-5)
    other = classic_augment(images, masks, torch.Generator().manual_seed(99), all_at_once=True)
    assert not torch.allclose(other[0], batch[0], atol=1e-3)
