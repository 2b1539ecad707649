"""Fourier domain adaptation (Yang & Soatto, "FDA: Fourier Domain Adaptation for Semantic Segmentation", CVPR 2020).

The low-frequency amplitude spectrum carries global appearance (illumination, colour cast, contrast) while the phase
carries structure; replacing an image's centred low-frequency amplitude square by a reference's transfers the
reference's "style" and keeps the content, so the source mask stays valid.

The FFT runs on images mapped to [0, 1], as the paper's [0, 255] images: there the zero-frequency coefficient (the
mean) is non-negative, so keeping the source phase transfers the reference's mean brightness. On zero-centred [−1, 1]
images a dark source has DC phase π and would receive the reference's brightness with the sign flipped.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger(__name__)


def fourier_domain_adaptation(images: torch.Tensor, references: torch.Tensor, beta: float = 0.01,
                              seed: int = 0) -> torch.Tensor:
    """Swap the low-frequency amplitude of each image with that of a randomly chosen reference.

    Args:
        images: (N, C, H, W) in [−1, 1].
        references: (K, C, H, W) in [−1, 1], same C, H, W as the images.
        beta: half-size of the swapped square as a fraction of min(H, W): b = floor(beta · min(H, W)); the square of
            side 2b + 1 around the (shifted) zero frequency is replaced, per channel. beta = 0 → identity.
        seed: seeds the choice of reference per image (reproducible).
    Returns:
        (N, C, H, W) images of the input dtype/device: the image's phase with the swapped amplitude, clipped to [−1, 1].
    """
    if images.ndim != 4 or references.shape[1:] != images.shape[1:]:
        raise ValueError(f"references {tuple(references.shape)} must match images {tuple(images.shape)} in C, H, W")
    if not 0.0 <= beta <= 0.5:
        raise ValueError(f"beta must lie in [0, 0.5], got {beta}")
    if beta == 0 or len(images) == 0:
        return images.clone()
    height, width = images.shape[-2:]
    b = math.floor(beta * min(height, width))
    generator = torch.Generator().manual_seed(seed)
    choice = torch.randint(len(references), (len(images),), generator=generator)
    unit_images = (images.double() + 1) / 2                                   # [0, 1]: non-negative DC
    unit_refs = (references.double()[choice.to(references.device)].to(images.device) + 1) / 2
    src = torch.fft.fftshift(torch.fft.fft2(unit_images), dim=(-2, -1))
    ref = torch.fft.fftshift(torch.fft.fft2(unit_refs), dim=(-2, -1))
    amplitude, phase = src.abs(), src.angle()
    ch, cw = height // 2, width // 2                                   # zero frequency after fftshift
    rows, cols = slice(ch - b, ch + b + 1), slice(cw - b, cw + b + 1)
    amplitude[..., rows, cols] = ref.abs()[..., rows, cols]
    mixed = torch.polar(amplitude, phase)
    out = torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real * 2 - 1
    logger.debug("FDA: %d images, beta=%g (b=%d px)", len(images), beta, b)
    return out.clamp(-1.0, 1.0).to(images.dtype)
