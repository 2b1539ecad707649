"""Mask post-processing: islands, holes, empty and duplicate rejection, diversity statistics."""

import numpy as np
import torch

from AlignFlowLib.masks import clean_mask, pairwise_iou, postprocess_masks


def _square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_small_islands_are_removed_and_large_kept():
    mask = _square(32, 4, 4, 10) | _square(32, 25, 25, 2)   # 100-px lesion + 4-px speck
    cleaned = clean_mask(mask, min_area_px=10)
    assert cleaned.sum() == 100
    assert not cleaned[25:27, 25:27].any()


def test_holes_are_filled_only_when_asked():
    mask = _square(32, 4, 4, 12)
    mask[8:10, 8:10] = False
    assert clean_mask(mask, 1, fill_holes=True).sum() == 144
    assert clean_mask(mask, 1, fill_holes=False).sum() == 140


def test_pairwise_iou_known_values():
    a = torch.from_numpy(np.stack([_square(8, 0, 0, 2), np.zeros((8, 8), bool)])[:, None].astype(np.float32))
    b = torch.from_numpy(np.stack([_square(8, 0, 0, 2), _square(8, 0, 1, 2)])[:, None].astype(np.float32))
    iou = pairwise_iou(a, b)
    assert torch.allclose(iou[0], torch.tensor([1.0, 2 / 6]))
    assert torch.allclose(iou[1], torch.tensor([0.0, 0.0]))


def test_postprocess_rejects_empty_and_duplicates_and_reports_diversity():
    train = torch.from_numpy(_square(32, 4, 4, 10)[None, None].astype(np.float32))
    raw = torch.full((3, 1, 32, 32), -1.0)
    raw[0, 0, 4:14, 4:14] = 1.0           # duplicate of the training mask
    raw[1, 0, 16:28, 16:28] = 1.0         # novel
    raw[2, 0, 0, 0] = 1.0                 # a single pixel: an island → empty after cleaning
    result = postprocess_masks(raw, train, min_area_fraction=0.01, max_train_iou=0.9)
    assert result.kept_indices == [1]
    assert result.rejected_duplicate == 1 and result.rejected_empty == 1
    assert result.masks.shape == (1, 1, 32, 32) and result.masks.sum() == 144
    assert result.nearest_train_iou == [0.0]
