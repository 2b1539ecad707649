"""The embedded default data: endoscopy-like phantoms in two domains that differ as two scopes or scanners do.

Each sample is a scene — tissue with low-frequency shading, fine texture and vessels, plus one or two irregular
blob lesions — rendered in a domain style. The scene (and so the mask) depends only on the seed and index; the
`target` style adds a colour cast, strong illumination falloff, lower contrast, sensor noise and blur. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import choose
from .io import write_png

DOMAINS = ("source", "target")


def _blob(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An irregular ellipse-like lesion: radius r(θ) = r0·(1 + Σₖ aₖ cos(kθ + φₖ)); returns (mask, depth in [0,1])."""
    cy, cx = rng.uniform(0.25, 0.75, size=2)
    r0 = rng.uniform(0.10, 0.24)
    stretch = rng.uniform(0.7, 1.3)
    dy, dx = (yy - cy) * stretch, (xx - cx) / stretch
    theta, distance = np.arctan2(dy, dx), np.hypot(dy, dx)
    radius = np.full_like(theta, r0)
    for k in (2, 3, 4):
        radius += r0 * rng.uniform(0, 0.18 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    depth = np.clip(1 - distance / radius, 0, 1)
    return distance < radius, depth


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
        amplitude, frequency, phase, offset = rng.uniform(0.05, 0.2), rng.uniform(1, 4), rng.uniform(0, 6), rng.uniform(0.1, 0.9)
        along, across = (xx, yy) if rng.random() < 0.5 else (yy, xx)
        distance = np.abs(across - offset - amplitude * np.sin(2 * np.pi * frequency * along + phase))
        image *= 1 - 0.22 * np.exp(-(distance / (0.012 + 0.01 * rng.random())) ** 2)[..., None]
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 3) if rng.random() < 0.3 else 1):
        blob, depth = _blob(rng, yy, xx)
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
    image = 0.7 * (image - image.mean()) + image.mean() + 0.04               # lower contrast, lifted blacks
    falloff = 1 - 0.6 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.5             # strong illumination falloff
    image = image * falloff[..., None]
    image = ndimage.gaussian_filter(image, (0.8, 0.8, 0))                      # softer optics
    return image + rng.normal(0, 0.03, image.shape)                          # sensor noise


def _source_style(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return image + rng.normal(0, 0.01, image.shape)


def make_phantom_pairs(domain: str, num: int, size_px: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`num` pairs: images (N, S, S, 3) uint8 and masks (N, S, S) uint8 in {0, 1}; masks do not depend on domain."""
    style = choose("phantom domain", domain, {"source": _source_style, "target": _target_style})
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
    source: Path        # pair folder, source domain
    references: Path    # target-domain images only (images/ inside)
    target_test: Path   # pair folder, target domain, never used for training


def _write(folder: Path, images: np.ndarray, masks: np.ndarray | None) -> None:
    for index, image in enumerate(images):
        write_png(folder / "images" / f"{index:04d}.png", image)
        if masks is not None:
            write_png(folder / "masks" / f"{index:04d}.png", masks[index] * 255)


def write_phantom_dataset(root: Path, size_px: int = 64, num_source: int = 200, num_references: int = 10,
                          num_target_test: int = 100, seed: int = 0) -> PhantomPaths:
    """Write source pairs, target references and a labelled target test set; each from its own seed stream."""
    root = Path(root)
    paths = PhantomPaths(root / "source", root / "target_references", root / "target_test")
    _write(paths.source, *make_phantom_pairs("source", num_source, size_px, seed))
    _write(paths.references, make_phantom_pairs("target", num_references, size_px, seed + 1)[0], None)
    _write(paths.target_test, *make_phantom_pairs("target", num_target_test, size_px, seed + 2))
    return paths
