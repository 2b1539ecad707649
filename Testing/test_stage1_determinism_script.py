"""bench/stage1_determinism.py's comparison on known answers (the script itself retrains a benchmark's stage 1)."""

import importlib.util
from pathlib import Path

import torch

SPEC = importlib.util.spec_from_file_location(
    "stage1_determinism", Path(__file__).resolve().parents[1] / "bench" / "stage1_determinism.py")
determinism = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(determinism)


def test_every_nested_tensor_is_compared_bit_for_bit(tmp_path):
    payload = {"step": 5, "model": {"w": torch.arange(6.0), "b": torch.zeros(2)}, "ema": {"w": torch.ones(3)},
               "optimizer": {"state": {0: {"exp_avg": torch.full((2,), 0.5)}}}}
    torch.save(payload, tmp_path / "a.pt")
    torch.save(payload, tmp_path / "same.pt")
    assert determinism.compare(tmp_path / "a.pt", tmp_path / "same.pt")["identical"]

    payload["optimizer"]["state"][0]["exp_avg"][1] += 1e-7  # deep inside, below any tolerance one might pick
    torch.save(payload, tmp_path / "moved.pt")
    moved = determinism.compare(tmp_path / "a.pt", tmp_path / "moved.pt")
    assert not moved["identical"] and moved["tensors_that_differ"] == 1 and 0 < moved["max_abs_diff"] < 1e-6

    del payload["ema"]
    torch.save(payload, tmp_path / "fewer.pt")
    assert not determinism.compare(tmp_path / "a.pt", tmp_path / "fewer.pt")["same_keys"]
