"""Classic augmentation baseline ("source + classic augmentation"): photometric jitter on the image, geometric
transforms on image and mask together.

Per sample, drawn from `generator`: brightness (+U(−0.2, 0.2)), contrast (×U(0.75, 1.25) about the image mean),
saturation (blend with grey, ×U(0.7, 1.3); RGB only), channel mixing (3×3 matrix I + U(−0.05, 0.05); RGB only),
gamma (on [0, 1], exponent U(0.7, 1.5)), Gaussian blur (p = 0.3, σ ~ U(0.3, 1.2) px), Gaussian noise
(σ ~ U(0, 0.03)), horizontal/vertical flips (p = 0.5 each) and a rotation by k·90° (k ∈ {0, 1, 2, 3} for square
images, {0, 2} otherwise). Images are clipped to [−1, 1]; masks only ever see the geometric transforms, so their
values are untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..device import to_device


def _uniform(generator: torch.Generator, low: float, high: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device).cpu()


def _beside(value: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A value drawn on the CPU, on `image`'s device and dtype. On CUDA through pinned memory without blocking: a
    plain copy per draw would make the host wait for the GPU dozens of times per batch."""
    return to_device(value, image.device).to(image.dtype)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) → (C, H, W): separable Gaussian blur, reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = image[None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1),
                 groups=channels)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1),
                 groups=channels)
    return x[0]


def _photometric(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(C, H, W) in [−1, 1] → jittered (C, H, W) in [−1, 1]."""
    x = image + _beside(_uniform(generator, -0.2, 0.2), image)
    x = (x - x.mean()) * _beside(_uniform(generator, 0.75, 1.25), image) + x.mean()
    if x.shape[0] == 3:
        grey = x.mean(0, keepdim=True)
        x = grey + (x - grey) * _beside(_uniform(generator, 0.7, 1.3), image)
        mixing = torch.eye(3) + _uniform(generator, -0.05, 0.05, (3, 3))
        x = torch.einsum("ij,jhw->ihw", _beside(mixing, image), x)
    unit = ((x.clamp(-1, 1) + 1) / 2)
    x = unit ** _beside(_uniform(generator, 0.7, 1.5), image) * 2 - 1
    if float(_uniform(generator, 0, 1)) < 0.3 and min(x.shape[-2:]) > 4:
        x = _gaussian_blur(x, float(_uniform(generator, 0.3, 1.2)))
    noise = _beside(torch.randn(x.shape, generator=generator, device=generator.device), image)
    x = x + noise * _beside(_uniform(generator, 0.0, 0.03), image)
    return x.clamp(-1.0, 1.0)


def classic_augment(images: torch.Tensor, masks: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly augment image/mask pairs; the same geometric transform is applied to an image and its mask.

    Args:
        images: (N, C, H, W) in [−1, 1], C ∈ {1, 3}.
        masks: (N, L, H, W) (any values: binary {0, 1} or [−1, 1]).
        generator: source of all randomness (reproducible for a given seed).
    Returns:
        (images (N, C, H, W) in [−1, 1], masks (N, L, H, W)); sizes are kept (non-square images only turn 0°/180°).
    """
    if images.ndim != 4 or masks.ndim != 4 or images.shape[0] != masks.shape[0] or \
            images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} must be (N, ·, H, W) alike")
    square = images.shape[-1] == images.shape[-2]
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        image = _photometric(image.float(), generator).to(images.dtype)
        if float(_uniform(generator, 0, 1)) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if float(_uniform(generator, 0, 1)) < 0.5:
            image, mask = image.flip(-2), mask.flip(-2)
        quarter_turns = int(torch.randint(4, (1,), generator=generator, device=generator.device))
        if not square:
            quarter_turns = 2 * (quarter_turns % 2)
        if quarter_turns:
            image, mask = image.rot90(quarter_turns, (-2, -1)), mask.rot90(quarter_turns, (-2, -1))
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)
