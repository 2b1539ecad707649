"""Multi-scale patch sliced Wasserstein distance (SWD; Karras et al., ICLR 2018, section 5 and appendix D).

The distance compares the local colour and texture statistics of two image sets, one level of a Laplacian pyramid at
a time, and uses no learned network. Alignment's reward and the KID-EL0 metric both read EfficientNet-Lite0
features, and a generator can lower a distance in those features through what the network does not see; neither
can then tell progress towards the target from progress on the network's blind spots. Nothing optimises this
distance, so it serves as a check beside them (it has blind spots of its own: it sees no object-level structure).

Unlike the original, patches are not normalised per set: a global colour shift between the sets is part of the
distance, since appearance is what alignment is meant to change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(images: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    channels = images.shape[1]
    kernel = (gain * _BINOMIAL[:, None] * _BINOMIAL[None, :]).to(images).expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=channels)


def _expand(small: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample by zero insertion at the even pixels the reduction kept, then interpolate with the same kernel
    (× 4 for the zeros): in phase with the reduction, so constants and ramps come back exactly."""
    n, c, height, width = small.shape
    sparse = small.new_zeros(n, c, 2 * height, 2 * width)
    sparse[:, :, ::2, ::2] = small
    return _blur(sparse, gain=4.0)[:, :, :size[0], :size[1]]


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass residual (the coarse colour and layout)."""
    bands = []
    for _ in range(levels - 1):
        smaller = _blur(images)[:, :, ::2, ::2]
        bands.append(images - _expand(smaller, images.shape[-2:]))
        images = smaller
    return bands + [images]


def pyramid_levels(size_px: int, patch_px: int = 7, most: int = 3) -> int:
    """Levels (at most `most`) whose coarsest still holds a patch: 3 at 96 px and 32 px, 2 at 16 px.

    Raises:
        ValueError: images smaller than one patch.
    """
    if size_px < patch_px:
        raise ValueError(f"patch SWD needs images of at least {patch_px} px, got {size_px} px")
    levels = 1
    while levels < most and size_px // 2 ** levels >= patch_px:
        levels += 1
    return levels


def _random_patches(images: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) → (N·count, C·size²) patches at positions drawn from `generator`."""
    n, _, height, width = images.shape
    top = torch.randint(height - size + 1, (n, count, 1, 1), generator=generator)
    left = torch.randint(width - size + 1, (n, count, 1, 1), generator=generator)
    offsets = torch.arange(size)
    rows, cols = top + offsets[:, None], left + offsets[None, :]             # (n, count, size, 1), (…, 1, size)
    batch = torch.arange(n)[:, None, None, None]
    patches = images[batch, :, rows.to(images.device), cols.to(images.device)]  # (n, count, size, size, C)
    return patches.reshape(n * count, -1)


def _sorted_at(values: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Rows of the column-sorted `values` at the given quantile levels (the empirical inverse CDF)."""
    index = (quantiles * len(values)).long().clamp(max=len(values) - 1)
    return values.sort(dim=0).values[index.to(values.device)]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int, generator: torch.Generator,
                       chunk: int = 128) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projected samples.

    a (n, d) and b (m, d) may differ in size: both inverse CDFs are read at min(n, m) common quantile levels."""
    quantiles = (torch.arange(min(len(a), len(b))) + 0.5) / min(len(a), len(b))
    total = 0.0
    for start in range(0, directions, chunk):
        step = torch.randn(a.shape[1], min(chunk, directions - start), generator=generator).to(a)
        step = step / step.norm(dim=0, keepdim=True)
        total += float((_sorted_at(a @ step, quantiles) - _sorted_at(b @ step, quantiles)).abs().sum(0).sum())
    return total / directions / len(quantiles)


@torch.no_grad()
def patch_swd(images_a: torch.Tensor, images_b: torch.Tensor, levels: int = 3, patches_per_image: int = 64,
              patch_px: int = 7, directions: int = 512, seed: int = 0) -> list[float]:
    """SWD between the patch sets of two image batches at each pyramid level, finest first.

    Images are (N, C, H, W) on one intensity scale (the library's [−1, 1]); the two batches may differ in N. For
    batches of the same shapes, the same seed draws the same patch positions and directions, so values from one seed
    are comparable across, e.g., alignment steps. The values are small; print them × 1000 as the paper does.

    Raises:
        ValueError: mismatched channels or sizes, fewer than 1 image on a side, or a coarsest level smaller than
            a patch.
    """
    if images_a.ndim != 4 or images_a.shape[1:] != images_b.shape[1:] or min(len(images_a), len(images_b)) < 1:
        raise ValueError(f"patch SWD needs two batches (N, C, H, W) of one image shape, got "
                         f"{tuple(images_a.shape)} and {tuple(images_b.shape)}")
    coarsest = min(images_a.shape[-2:]) // 2 ** (levels - 1)
    if levels < 1 or coarsest < patch_px:
        raise ValueError(f"{levels} pyramid levels of {tuple(images_a.shape[-2:])} px images leave "
                         f"{coarsest} px at the coarsest level, less than a {patch_px} px patch")
    generator = torch.Generator().manual_seed(seed)
    distances = []
    for band_a, band_b in zip(laplacian_pyramid(images_a.float(), levels), laplacian_pyramid(images_b.float(), levels)):
        patches_a = _random_patches(band_a, patches_per_image, patch_px, generator)
        patches_b = _random_patches(band_b, patches_per_image, patch_px, generator)
        distances.append(sliced_wasserstein(patches_a, patches_b, directions, generator))
    return distances


def relative_patch_swd(distances: list[float], baseline: list[float]) -> float:
    """Mean over levels of distance / baseline distance: levels differ in scale by an order of magnitude, and a
    plain mean would be the coarse level alone.

    Raises:
        ValueError: the two lists differ in length (distances from different pyramids).
    """
    if len(distances) != len(baseline):
        raise ValueError(f"{len(distances)} levels against a baseline of {len(baseline)}")
    return sum(d / max(b, 1e-12) for d, b in zip(distances, baseline)) / len(distances)
