"""The embedded default data: endoscopy-like phantoms in two domains that differ as two scopes or scanners do.

Each sample is a scene — tissue with low-frequency shading, fine texture and vessels, plus one or two irregular
blob lesions — rendered in a domain style. The scene (and so the mask) depends only on the seed and index; the
`target` style adds a colour cast, strong illumination falloff, lower contrast, sensor noise and blur. Deterministic.

The gap is sized to matter: a small MONAI UNet trained on 200 source pairs (400 steps) scored Dice ~0.92 on source
and ~0.65-0.70 on target at 32 and 64 px, while the lesions stay visible in the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import AlignFlowError, choose
from .io import write_png

DOMAINS = ("source", "target")


def _blobs(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One lesion (70 %) or two (30 %) covering ~5-25 % of the image together. Each is an irregular ellipse,
    r(θ) = r0·(1 + Σₖ aₖ cos(kθ + φₖ)) for k = 2, 3, 4, stretched area-preservingly and kept inside the frame.
    Returns (mask, depth in [0, 1] from rim to centre) per lesion."""
    count = 2 if rng.random() < 0.3 else 1
    total_area = rng.uniform(0.06, 0.22)
    first_share = rng.uniform(0.35, 0.65)
    shares = [1.0] if count == 1 else [first_share, 1 - first_share]
    lesions = []
    for share in shares:
        r0 = np.sqrt(total_area * share / np.pi)
        stretch = rng.uniform(0.75, 1.33)
        harmonics = [(k, rng.uniform(0, 0.3 / k), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)]
        extent = r0 * (1 + sum(a for _, a, _ in harmonics)) * max(stretch, 1 / stretch)
        low, high = min(extent + 0.02, 0.5), max(0.98 - extent, 0.5)
        cy, cx = rng.uniform(low, high, size=2)
        dy, dx = (yy - cy) * stretch, (xx - cx) / stretch
        theta, distance = np.arctan2(dy, dx), np.hypot(dy, dx)
        radius = r0 * (1 + sum(a * np.cos(k * theta + phase) for k, a, phase in harmonics))
        lesions.append((distance < radius, np.clip(1 - distance / radius, 0, 1)))
    return lesions


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _scene(index: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Domain-free scene: (S, S, 3) float RGB in ~[0, 1] and its (S, S) bool lesion mask."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    shading = 0.12 * _smooth_noise(rng, size, size / 6)
    texture = 0.05 * _smooth_noise(rng, size, max(size / 40, 0.6))
    tissue = np.array([0.78, 0.42, 0.36]) + rng.uniform(-0.05, 0.05, 3)
    image = tissue[None, None] * (1 + shading + texture)[..., None]
    for _ in range(rng.integers(1, 4)):  # vessels: thin dark-red sinusoidal curves
        amplitude, frequency = rng.uniform(0.05, 0.2), rng.uniform(0.5, 2.5)
        phase, offset = rng.uniform(0, 6), rng.uniform(0.1, 0.9)
        along, across = (xx, yy) if rng.random() < 0.5 else (yy, xx)
        distance = np.abs(across - offset - amplitude * np.sin(2 * np.pi * frequency * along + phase))
        image *= 1 - 0.22 * np.exp(-(distance / (0.012 + 0.01 * rng.random())) ** 2)[..., None]
    mask = np.zeros((size, size), bool)
    for blob, depth in _blobs(rng, yy, xx):
        bumps = 0.08 * _smooth_noise(rng, size, max(size / 25, 0.8))
        lesion = np.array([0.92, 0.55, 0.42]) * (0.85 + 0.3 * np.sqrt(depth) + bumps)[..., None]
        rim = np.clip(1 - depth * 8, 0, 1) * blob  # darker rim: a lesion is a raised structure
        weight = ndimage.gaussian_filter(blob.astype(np.float32), 0.6)[..., None]
        image = image * (1 - weight) + lesion * weight
        image *= (1 - 0.15 * rim)[..., None]
        mask |= blob
    return np.clip(image, 0, 1.2), mask


def _target_style(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A different scope: colour cast, vignetting, lower contrast, noise, blur."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    image = image * np.array([0.72, 0.95, 1.10])                           # colour cast (cooler, greener)
    image = 0.6 * (image - image.mean()) + image.mean() + 0.06               # lower contrast, lifted blacks
    falloff = 1 - 0.6 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.5             # strong illumination falloff
    image = image * falloff[..., None]
    blur_px = max(0.8, size / 48)                                          # softer optics, scale-aware
    image = ndimage.gaussian_filter(image, (blur_px, blur_px, 0))
    return image + rng.normal(0, 0.03, image.shape)                          # sensor noise


def _source_style(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return image + rng.normal(0, 0.01, image.shape)


def make_phantom_pairs(domain: str, num: int, size_px: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`num` phantom pairs of one domain ("source" or "target").

    Returns images (N, S, S, 3) uint8 and masks (N, S, S) uint8 in {0, 1}. Pair k depends only on (seed, k) and the
    domain; the scene, and so the mask, depends only on (seed, k), so both domains give the same masks for a seed.
    """
    style = choose("phantom domain", domain, {"source": _source_style, "target": _target_style})
    if num < 0 or size_px < 8 or seed < 0:
        raise AlignFlowError(f"phantoms need num >= 0, size_px >= 8 and seed >= 0 (got {num}, {size_px}, {seed})")
    images = np.empty((num, size_px, size_px, 3), np.uint8)
    masks = np.empty((num, size_px, size_px), np.uint8)
    for index in range(num):
        scene, mask = _scene(index, size_px, seed)
        styled = style(scene, np.random.default_rng([seed, index, 7]))
        images[index] = np.clip(styled * 255 + 0.5, 0, 255).astype(np.uint8)
        masks[index] = mask
    return images, masks


@dataclass(frozen=True)
class PhantomPaths:
    source: Path        # pair folder (images/ + masks/), source domain
    references: Path    # target-domain images only, in images/
    target_test: Path   # pair folder, target domain, never used for training or the reward


def _write(folder: Path, images: np.ndarray, masks: np.ndarray | None) -> None:
    for index, image in enumerate(images):
        write_png(folder / "images" / f"{index:04d}.png", image)
        if masks is not None:
            write_png(folder / "masks" / f"{index:04d}.png", masks[index] * 255)
    (folder / "images").mkdir(parents=True, exist_ok=True)


def write_phantom_dataset(root: Path, size_px: int = 64, num_source: int = 200, num_references: int = 10,
                          num_target_test: int = 100, seed: int = 0) -> PhantomPaths:
    """Write `root/source` (pairs), `root/target_references/images` and `root/target_test` (pairs).

    The three sets use the phantom seeds 3·seed, 3·seed + 1 and 3·seed + 2: no scene is shared between them, nor
    between datasets written with different seeds.
    """
    root = Path(root)
    paths = PhantomPaths(root / "source", root / "target_references", root / "target_test")
    _write(paths.source, *make_phantom_pairs("source", num_source, size_px, 3 * seed))
    _write(paths.references, make_phantom_pairs("target", num_references, size_px, 3 * seed + 1)[0], None)
    _write(paths.target_test, *make_phantom_pairs("target", num_target_test, size_px, 3 * seed + 2))
    return paths
