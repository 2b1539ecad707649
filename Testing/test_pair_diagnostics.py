"""bench/pair_diagnostics.py's measures on known answers (the script itself reads a benchmark folder)."""

import importlib.util
from pathlib import Path

import pytest
import torch

SPEC = importlib.util.spec_from_file_location("pair_diagnostics",
                                              Path(__file__).resolve().parents[1] / "bench" / "pair_diagnostics.py")
diagnostics = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(diagnostics)


def test_lesion_contrast_is_measured_against_the_ring_around_the_mask():
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 10:20, 10:20] = 1
    images = torch.full((2, 3, 32, 32), -1.0)             # a letterbox-like far background at -1 ...
    images[:, :, 6:24, 6:24] = 0.2                         # ... a ring of tissue at 0.2 ...
    images[:, :, 10:20, 10:20] = 0.7                       # ... and the lesion at 0.7
    assert diagnostics.mask_visibility(images, masks, ring_px=4) == pytest.approx(0.5)
    assert diagnostics.mask_visibility(images, masks, ring_px=8) > 0.5  # a wider ring reaches the background
    assert diagnostics.mask_visibility(images, torch.zeros_like(masks)) == 0  # no lesion, nothing to measure


def test_precision_and_recall_of_k_nearest_neighbour_manifolds():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert diagnostics.coverage(real, real) == 1.0
    assert diagnostics.coverage(real + 100, real) == 0.0    # far away: outside every real point's ball
    collapsed = real[:5].repeat(40, 1) + 1e-3               # realistic but with no variety
    assert diagnostics.coverage(collapsed, real) == 1.0    # precision stays high ...
    assert diagnostics.coverage(real, collapsed) < 0.2     # ... recall exposes the collapse
    assert diagnostics.mean_pairwise(real[:2]) == pytest.approx(float((real[0] - real[1]).norm()))
