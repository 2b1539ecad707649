"""bench/stage1_dispersion.py's image statistics on known answers (the script itself trains and samples)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # the script imports pair_diagnostics beside it
SPEC = importlib.util.spec_from_file_location("stage1_dispersion", BENCH / "stage1_dispersion.py")
dispersion = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dispersion)


def test_brightness_spread_is_measured_across_images_on_the_unit_scale():
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 2:6, 2:6] = 1
    flat = torch.stack([torch.full((3, 8, 8), -0.5), torch.full((3, 8, 8), 0.5)])  # brightness 0.25 and 0.75
    row = dispersion.image_statistics(flat, masks)
    assert row["brightness_mean"] == pytest.approx(0.5)
    assert row["brightness_sd_across_images"] == pytest.approx(0.25 * 2 ** 0.5)  # sample SD of {0.25, 0.75}
    assert row["within_image_sd_mean"] == pytest.approx(0.0)   # each image is flat ...
    assert row["lesion_visibility"] == pytest.approx(0.0)      # ... so its lesion is invisible
    same = torch.stack([flat[0], flat[0]])
    assert dispersion.image_statistics(same, masks)["brightness_sd_across_images"] == pytest.approx(0.0)


def test_named_arguments_need_a_name():
    assert dispersion.parse_named(["a=x,y", "b="], "--variant") == {"a": "x,y", "b": ""}
    with pytest.raises(SystemExit, match="NAME="):
        dispersion.parse_named(["no-name"], "--variant")
