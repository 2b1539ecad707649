"""The stage-2 reward: MMD², FID/KID on features, and the frozen EfficientNet-Lite0 feature extractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from AlignFlowLib.errors import AlignFlowError
from AlignFlowLib.reward.features import FeatureExtractor, load_feature_extractor
from AlignFlowLib.reward.metrics import (frechet_distance, generator_metrics, image_features,
                                         kernel_inception_distance)
from AlignFlowLib.reward.mmd import mmd2_unbiased


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


# ---------------------------------------------------------------- MMD


def test_mmd_near_zero_for_one_distribution_and_grows_with_shift():
    same = float(mmd2_unbiased(_gauss(200, 8, 0), _gauss(200, 8, 1)))
    small = float(mmd2_unbiased(_gauss(200, 8, 0), _gauss(200, 8, 1, shift=0.5)))
    large = float(mmd2_unbiased(_gauss(200, 8, 0), _gauss(200, 8, 1, shift=2.0)))
    assert abs(same) < 0.02
    assert same < small < large
    assert large > 0.3


def test_mmd_unbiased_can_be_negative():
    values = [float(mmd2_unbiased(_gauss(10, 4, s), _gauss(10, 4, 100 + s))) for s in range(20)]
    assert min(values) < 0 < max(values)


def test_mmd_unbiased_averages_to_zero_over_random_splits():
    pool = _gauss(400, 6, 7)
    g = torch.Generator().manual_seed(8)
    values = []
    for _ in range(200):
        order = torch.randperm(len(pool), generator=g)
        values.append(float(mmd2_unbiased(pool[order[:12]], pool[order[12:24]])))
    values = torch.tensor(values)
    # Centred on 0 within sampling error; keeping the diagonal terms (the biased V-statistic) would add
    # ≈ 2·(k(0) − E k)/12 ≈ 0.3 here, with k(0) = 4 for the four-bandwidth kernel sum.
    assert abs(float(values.mean())) < 3 * float(values.std()) / len(values) ** 0.5
    assert abs(float(values.mean())) < 0.03


def test_mmd_rbf_is_shift_invariant_and_keeps_fp64():
    x, y = _gauss(20, 5, 0), _gauss(20, 5, 1, shift=0.7)
    plain = mmd2_unbiased(x, y)
    assert torch.allclose(mmd2_unbiased(x + 1e3, y + 1e3), plain, atol=1e-5)   # centring avoids fp32 cancellation
    assert mmd2_unbiased(x.double(), y.double()).dtype == torch.float64
    with pytest.raises(ValueError):
        mmd2_unbiased(x, y[:, :3])
    with pytest.raises(ValueError):
        mmd2_unbiased(x, y, bandwidths=[1.0, 0.0])


def test_mmd_gradient_flows_to_x_and_reduces_discrepancy():
    x = _gauss(32, 5, 0, shift=1.0).requires_grad_(True)
    y = _gauss(32, 5, 1)
    loss = mmd2_unbiased(x, y)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = x - 2.0 * x.grad / x.grad.norm()
    assert float(mmd2_unbiased(stepped, y)) < float(loss.detach())


def test_mmd_needs_two_samples_and_known_kernel():
    with pytest.raises(ValueError):
        mmd2_unbiased(_gauss(1, 3, 0), _gauss(5, 3, 1))
    with pytest.raises(ValueError):
        mmd2_unbiased(_gauss(5, 3, 0), _gauss(1, 3, 1))
    with pytest.raises(AlignFlowError, match="rbf"):
        mmd2_unbiased(_gauss(5, 3, 0), _gauss(5, 3, 1), kernel="laplace")


def test_mmd_kid_kernel_and_bandwidths():
    same = float(mmd2_unbiased(_gauss(300, 16, 0), _gauss(300, 16, 1), "kid"))
    shifted = float(mmd2_unbiased(_gauss(300, 16, 0), _gauss(300, 16, 1, shift=1.0), "kid"))
    assert abs(same) < 0.05 and shifted > 0.5
    custom = mmd2_unbiased(_gauss(50, 4, 0), _gauss(50, 4, 1, shift=1.0), bandwidths=[1.0])
    assert custom.ndim == 0 and custom.dtype == torch.float32 and float(custom) > 0


# ---------------------------------------------------------------- FID / KID


def test_frechet_distance_identical_and_shifted():
    a = _gauss(500, 6, 0).double()
    assert abs(frechet_distance(a, a)) < 1e-4
    delta = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    # Equal covariances (the same sample shifted): FID reduces to ‖Δμ‖².
    assert frechet_distance(a, a + delta) == pytest.approx(float(delta.square().sum()), rel=1e-3)


def _fid_by_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real))


def test_frechet_distance_matches_sqrtm_for_many_and_few_samples():
    a, b = _gauss(40, 5, 0).double().numpy(), (_gauss(30, 5, 1).double() * 1.5 + 0.3).numpy()
    assert frechet_distance(a, b, ridge=0.0) == pytest.approx(_fid_by_sqrtm(a, b), rel=1e-6)      # n > d route
    few_a, few_b = _gauss(6, 12, 2).double().numpy(), (_gauss(5, 12, 3).double() * 0.5).numpy()  # n < d: singular
    value = frechet_distance(few_a, few_b)
    assert value > 0 and value == pytest.approx(_fid_by_sqrtm(few_a, few_b), rel=1e-4)
    assert abs(frechet_distance(few_a, few_a)) < 1e-9
    with pytest.raises(ValueError):
        frechet_distance(few_a[:1], few_b)


def test_kid_near_zero_for_one_distribution():
    mean, std = kernel_inception_distance(_gauss(200, 32, 0), _gauss(200, 32, 1), num_subsets=5, subset_size=100)
    shifted, _ = kernel_inception_distance(_gauss(200, 32, 0), _gauss(200, 32, 1, 1.0), num_subsets=5,
                                           subset_size=100)
    assert abs(mean) < 0.05 and std >= 0
    assert shifted > 10 * abs(mean) and shifted > 0.1


# ---------------------------------------------------------------- feature extractor


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return load_feature_extractor(96, 1.0, "cpu")


def _images(n: int, channels: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_extractor_shape_finite_deterministic(extractor):
    images = _images(3)
    with torch.no_grad():
        a, b = extractor(images), extractor(images)
    assert a.shape == (3, 1280 + 2 * (32 + 24)) == (3, extractor.dim)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert extractor.deep_features(images).shape == (3, 1280)
    assert extractor.style_features(images).shape == (3, 112)
    assert torch.allclose(a[:, :1280], extractor.deep_features(images).detach())
    assert torch.allclose(a[:, 1280:], extractor.style_weight * extractor.style_features(images).detach())


def test_extractor_cached_frozen_and_stays_eval(extractor):
    assert load_feature_extractor(96, 1.0, "cpu") is extractor
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training and not any(m.training for m in extractor.modules())


def test_extractor_input_gradient_and_grey(extractor):
    images = _images(2).requires_grad_(True)
    extractor(images).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    grey = _images(2, channels=1)
    features = extractor(grey)
    assert features.shape == (2, extractor.dim) and torch.isfinite(features).all()
    assert torch.allclose(features, extractor(grey.expand(-1, 3, -1, -1)), atol=1e-5)


def test_extractor_sensitive_to_colour_more_than_small_noise(extractor):
    # Images with some fine texture, like real photographs: on perfectly smooth images an ImageNet CNN reacts
    # strongly to the onset of any high-frequency texture, which would make this comparison meaningless.
    g = torch.Generator().manual_seed(4)
    images = (_images(4, size=96) + 0.03 * torch.randn(4, 3, 96, 96, generator=g)).clamp(-1, 1)
    noise = 0.01 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    tint = torch.tensor([0.3, -0.1, -0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        base = extractor(images)
        noisy = extractor((images + noise).clamp(-1, 1))
        tinted = extractor((images + tint).clamp(-1, 1))
    assert (tinted - base).norm(dim=1).mean() > 5 * (noisy - base).norm(dim=1).mean()


def test_generator_metrics_keys(extractor):
    target = _images(6, size=48, seed=2)
    metrics = generator_metrics(extractor, _images(6, size=48, seed=3), target, batch_size=4)
    assert set(metrics) == {"fid_el0", "kid_el0", "kid_el0_std", "mmd_el0"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert metrics["fid_el0"] > 0


def test_generator_metrics_reuse_target_features(extractor):
    generated, target, other = (_images(6, size=48, seed=s) for s in (3, 2, 4))
    plain = generator_metrics(extractor, generated, target, batch_size=4)
    reused = generator_metrics(extractor, generated, target, target_features=image_features(extractor, target))
    assert reused == pytest.approx(plain, rel=1e-5, abs=1e-8)
    # The features stand for the target images: those of other images give other distances.
    assert generator_metrics(extractor, generated, target, target_features=image_features(extractor, other)) != \
        pytest.approx(plain, rel=1e-3)
    with pytest.raises(ValueError, match="do not fit"):
        generator_metrics(extractor, generated, target, target_features=image_features(extractor, target[:4]))


# ---------------------------------------------------------------- patch SWD (no network)


def _textured(n: int, seed: int, size: int = 32, colour: float = 0.0, stripes: float = 0.0) -> torch.Tensor:
    """Smooth random blobs in [−1, 1], optionally tinted (coarse change) or striped every other row (fine change)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=generator) * 2 - 1, size=size,
                                             mode="bilinear", align_corners=False)
    rows = torch.arange(size).remainder(2).float().view(1, 1, size, 1) * 2 - 1
    return (0.6 * coarse + colour + stripes * rows).clamp(-1, 1)


def test_sliced_wasserstein_of_a_shift_in_one_dimension_is_the_shift():
    from AlignFlowLib.reward.patch_swd import sliced_wasserstein

    a = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    # In one dimension every unit direction is ±1, so each projected distance is the shift itself.
    assert sliced_wasserstein(a, a + 0.3, 16, torch.Generator().manual_seed(1)) == pytest.approx(0.3, abs=1e-5)
    # Different sample sizes are compared at common quantiles: half of the same draws cost only sampling error
    # (about 0.09 here), well under the shift.
    assert sliced_wasserstein(a, a[::2], 16, torch.Generator().manual_seed(1)) < 0.15


def test_pyramid_bands_of_constants_and_ramps_are_empty_and_patches_are_windows():
    from AlignFlowLib.reward.patch_swd import _random_patches, laplacian_pyramid

    tint = torch.tensor([0.0, 0.1, 0.2]).view(3, 1, 1)
    ramp = (torch.arange(32.0) / 32).view(1, 1, 1, 32).expand(2, 3, 32, 32) + tint
    bands = laplacian_pyramid(ramp, 3)
    assert [tuple(b.shape[-2:]) for b in bands] == [(32, 32), (16, 16), (8, 8)]
    # Reduction and expansion are in phase: smooth shading stays in the low-pass level (away from the borders).
    assert max(float(b[..., 4:-4, 4:-4].abs().max()) for b in bands[:2]) < 1e-3
    assert float(bands[2].std()) > 0.1
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    patches = _random_patches(images, 5, 7, torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)  # the same draws, sliced by hand
    top, left = torch.randint(6, (2, 5, 1, 1), generator=generator), torch.randint(6, (2, 5, 1, 1), generator=generator)
    expected = torch.stack([images[i, :, top[i, j, 0, 0]:top[i, j, 0, 0] + 7, left[i, j, 0, 0]:left[i, j, 0, 0] + 7]
                            .permute(1, 2, 0).reshape(-1) for i in range(2) for j in range(5)])
    assert torch.equal(patches, expected)


def test_patch_swd_separates_a_colour_shift_from_a_texture_change():
    from AlignFlowLib.reward.patch_swd import patch_swd

    base, same = _textured(40, 0), _textured(40, 1)
    tinted, striped = _textured(40, 1, colour=0.3), _textured(40, 1, stripes=0.15)
    floor, colour, texture = patch_swd(base, same), patch_swd(base, tinted), patch_swd(base, striped)
    assert len(floor) == 3
    # A tint moves the low-pass (last) level far more than sampling noise does; stripes two pixels apart live in
    # the finest band-pass level, which a tint leaves alone.
    assert colour[-1] > 5 * floor[-1] and colour[0] < 2 * floor[0] + 1e-3
    assert texture[0] > 5 * floor[0] and texture[0] > colour[0]


def test_patch_swd_is_deterministic_per_seed_and_validates_shapes():
    from AlignFlowLib.reward.patch_swd import patch_swd, pyramid_levels, relative_patch_swd

    a, b = _textured(6, 0), _textured(9, 1)
    assert patch_swd(a, b, seed=3) == patch_swd(a, b, seed=3)
    assert patch_swd(a, b, seed=3) != patch_swd(a, b, seed=4)
    assert [pyramid_levels(s) for s in (96, 32, 16, 8)] == [3, 3, 2, 1]
    assert relative_patch_swd([2.0, 3.0], [1.0, 6.0]) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="2 levels against a baseline of 3"):
        relative_patch_swd([2.0, 3.0], [1.0, 6.0, 1.0])
    with pytest.raises(ValueError, match="one image shape"):
        patch_swd(a, _textured(6, 0, size=16))
    with pytest.raises(ValueError, match="coarsest level"):
        patch_swd(_textured(2, 0, size=16), _textured(2, 1, size=16), levels=3)
    with pytest.raises(ValueError, match="at least 7 px"):
        pyramid_levels(6)


def test_reward_views_are_crops_inside_the_image_with_flips():
    from AlignFlowLib.reward.views import apply_views, random_view_transforms

    size = 32
    centres = (torch.arange(size) + 0.5) / size * 2 - 1                 # pixel centres in grid coordinates
    ramp = torch.stack([centres[None].expand(size, size), centres[:, None].expand(size, size)])[None]  # (1, 2, H, W)
    transforms = random_view_transforms(200, torch.Generator().manual_seed(0))
    views = apply_views(ramp.expand(200, -1, -1, -1), transforms)
    # Each view of a coordinate ramp is a ramp again: its span is the crop's side, and it stays inside the image (the
    # outermost pixels are left out: within half a pixel of the image's edge, bilinear sampling holds the edge value).
    for axis, line in ((0, views[:, 0, 0, 1:-1]), (1, views[:, 1, 1:-1, 0])):   # a row of x, a column of y
        span = (line[:, -1] - line[:, 0]).abs() / (centres[-2] - centres[1])
        assert torch.allclose(span, transforms[:, axis, axis].abs(), atol=1e-4), axis
        assert span.min() >= 0.6 ** 0.5 - 1e-4 and span.max() <= 1 + 1e-4 and span.std() > 0.05
        assert line.diff(dim=-1).abs().std(-1).max() < 1e-4, axis
    # Both flips occur, independently per axis, and a flip reverses the ramp's direction.
    horizontal = views[:, 0, 0, -1] < views[:, 0, 0, 0]
    vertical = views[:, 1, -1, 0] < views[:, 1, 0, 0]
    assert 40 < horizontal.sum() < 160 and 40 < vertical.sum() < 160 and (horizontal != vertical).any()
    # A full-size crop is the image or one of its flips, pixel for pixel.
    image = torch.rand(1, 3, size, size)
    full = apply_views(image.expand(8, -1, -1, -1), random_view_transforms(8, torch.Generator().manual_seed(1), 1.0))
    flips = [image, image.flip(-1), image.flip(-2), image.flip(-1, -2)]
    assert all(any(torch.allclose(view, flip[0], atol=1e-5) for flip in flips) for view in full)


def test_reward_views_are_seeded_differentiable_and_validated():
    from AlignFlowLib.reward.views import apply_views, random_view_transforms

    draw = lambda seed: random_view_transforms(4, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))
    images = torch.rand(4, 3, 16, 16, requires_grad=True)
    apply_views(images, draw(0)).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="min_area"):
        random_view_transforms(2, torch.Generator(), 0.0)
    with pytest.raises(ValueError, match="transforms"):
        apply_views(images.detach(), draw(0)[:3])


# ---------------------------------------------------------------- style statistics over tissue only


def _bordered(border_value: float) -> torch.Tensor:
    """A textured 96 px frame whose top and bottom quarter are a black border (or letterbox) of `border_value`."""
    image = _images(1, size=96, seed=3) * 0.5 + 0.2
    image[..., :24, :] = border_value
    image[..., 72:, :] = border_value
    return image


def test_tissue_style_statistics_ignore_near_black_border():
    whole, tissue = load_feature_extractor(96, 1.0, "cpu"), load_feature_extractor(96, 1.0, "cpu", "tissue")
    assert tissue is not whole and tissue.style_region == "tissue"
    letterbox, dark_border = _bordered(-1.0), _bordered(-0.85)       # -0.85: 7.5 % of full scale, below 10 %
    with torch.no_grad():
        change = {name: (extractor.style_features(dark_border) - extractor.style_features(letterbox)).norm()
                  / extractor.style_features(letterbox).norm() for name, extractor in (("all", whole),
                                                                                        ("tissue", tissue))}
        # The deep part does not depend on the region.
        assert torch.equal(tissue.deep_features(letterbox), whole.deep_features(letterbox))
    # Over all pixels the border's shade moves the statistics; over tissue only the cells at its edge feel it.
    assert change["tissue"] < 0.05 * change["all"], change


def test_tissue_style_statistics_equal_plain_ones_without_dark_pixels_and_fall_back_when_all_dark():
    whole, tissue = load_feature_extractor(96, 1.0, "cpu"), load_feature_extractor(96, 1.0, "cpu", "tissue")
    bright = _images(2, size=96, seed=4) * 0.3 + 0.3                  # every pixel well above the threshold
    black = torch.full((1, 3, 96, 96), -1.0)
    with torch.no_grad():
        assert torch.allclose(tissue.style_features(bright), whole.style_features(bright), atol=1e-5)
        assert not torch.allclose(tissue.style_features(_bordered(-1.0)), whole.style_features(_bordered(-1.0)),
                                  atol=1e-3)
        # No tissue at all: every cell at the floor weight, so the statistics stay finite and equal the plain ones.
        assert torch.allclose(tissue.style_features(black), whole.style_features(black), atol=1e-5)
    with pytest.raises(ValueError, match="style_region"):
        FeatureExtractor(96, 1.0, "lesion")


@pytest.mark.parametrize("start", [72, 73, 74, 75])
def test_tissue_style_statistics_have_no_gradient_into_the_border(start):
    """Every feature cell whose receptive field reaches a border pixel is left out (up to the 1e-3 floor), wherever
    the border starts relative to the network's strides: the generator cannot lower the statistics by painting it."""
    image = _images(1, size=96, seed=3) * 0.5 + 0.2
    image[..., start:, :] = image[..., :, start:] = -1.0                 # bottom and right border
    gradients = {}
    for region in ("all", "tissue"):
        pixels = image.clone().requires_grad_(True)
        load_feature_extractor(96, 1.0, "cpu", region).style_features(pixels).sum().backward()
        gradient = pixels.grad.abs()
        assert torch.isfinite(gradient).all()
        border = torch.cat([gradient[..., start:, :].flatten(), gradient[..., :start, start:].flatten()])
        gradients[region] = border.max() / gradient[..., 20:40, 20:40].mean()
    assert gradients["all"] > 0.5 and gradients["tissue"] < 0.02, gradients


def test_tissue_colour_reads_the_tissue_and_not_the_border():
    from AlignFlowLib.reward import tissue_colour

    letterbox, dark_border = _bordered(-1.0), _bordered(-0.85)
    tissue_pixels = ((letterbox[..., 24:72, :] + 1) / 2).flatten(2)
    expected = torch.cat([tissue_pixels.mean(-1), tissue_pixels.std(-1, unbiased=False)], dim=1)
    # Over the tissue rows only, whatever the border's shade (up to the 1e-3 floor weight of dark pixels).
    assert torch.allclose(tissue_colour(letterbox), expected, atol=2e-3)
    assert torch.allclose(tissue_colour(dark_border), tissue_colour(letterbox), atol=2e-3)
    # A frame without dark pixels gets its plain statistics; one without tissue falls back to them too.
    bright = _images(2, size=32, seed=4) * 0.3 + 0.3
    plain = ((bright + 1) / 2).flatten(2)
    assert torch.allclose(tissue_colour(bright), torch.cat([plain.mean(-1), plain.std(-1, unbiased=False)], 1),
                          atol=1e-5)
    dark = _images(1, size=32, seed=8) * 0.05 - 0.9                   # textured, but all below the threshold
    dark_plain = ((dark + 1) / 2).flatten(2)
    assert torch.allclose(tissue_colour(dark), torch.cat([dark_plain.mean(-1), dark_plain.std(-1, unbiased=False)], 1),
                          atol=1e-5)
    # Greyscale: one channel, two numbers.
    assert tissue_colour(bright[:, :1]).shape == (2, 2)


def test_tissue_colour_gradient_reaches_tissue_only_and_mmd_tells_colours_apart():
    from AlignFlowLib.reward import mmd2_unbiased, tissue_colour

    pixels = _bordered(-1.0).requires_grad_(True)
    tissue_colour(pixels).sum().backward()
    gradient = pixels.grad.abs()
    assert gradient[..., 30:60, :].mean() > 0 and gradient[..., :24, :].max() < 1e-2 * gradient[..., 30:60, :].max()
    reddish = _images(8, size=32, seed=5) * 0.2 + torch.tensor([0.4, -0.3, -0.4]).view(1, 3, 1, 1)
    greenish = _images(8, size=32, seed=6) * 0.2 + torch.tensor([-0.4, 0.3, -0.4]).view(1, 3, 1, 1)
    also_reddish = _images(8, size=32, seed=7) * 0.2 + torch.tensor([0.4, -0.3, -0.4]).view(1, 3, 1, 1)
    far = mmd2_unbiased(tissue_colour(reddish), tissue_colour(greenish))
    near = mmd2_unbiased(tissue_colour(reddish), tissue_colour(also_reddish))
    assert far > 0.5 and near < 0.2 * far, (far, near)
