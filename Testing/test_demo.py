"""The demo's path end to end on tiny phantom data: one recipe three ways, paired differences with intervals."""

from __future__ import annotations

import json

import torch

from AlignFlowLib.config import replace
from AlignFlowLib.demo import run_demo
from AlignFlowLib.presets import DEMO

TINY = replace(DEMO, image_generator=replace(DEMO.image_generator, num_steps=30, checkpoint_every_steps=15),
               mask_generator=replace(DEMO.mask_generator, num_steps=20, checkpoint_every_steps=10, max_train_iou=1.01),
               align=replace(DEMO.align, num_steps=4, eval_every_steps=2, eval_num_images=8, batch_size=4,
                             feature_size_px=32),
               synthesis=replace(DEMO.synthesis, num_pairs=24),
               segmenter=replace(DEMO.segmenter, num_steps=20, ema_halflife_steps=5))


def test_demo_compares_one_recipe_three_ways(tmp_path):
    metrics = run_demo(tmp_path / "demo", torch.device("cpu"), TINY, num_source=40, num_references=4,
                       num_target_test=20, num_compare=8)
    assert set(metrics["target_test"]) == {"source_only", "source_plus_stage1_synthetic",
                                           "source_plus_aligned_synthetic"}
    for name, difference in metrics["target_test_differences"].items():
        assert difference["ci_low"] <= difference["mean_diff"] <= difference["ci_high"]
        assert difference["num_images"] == 20
    aligned, source_only = (metrics["target_test"][k]["mdice"] for k in ("source_plus_aligned_synthetic",
                                                                         "source_only"))
    assert abs(metrics["target_test_differences"]["aligned_minus_source_only"]["mean_diff"]
               - (aligned - source_only)) < 1e-9
    assert metrics["segmenter_recipe"]["strong_augment"] is True  # the protocol's recipe for all three rows
    table = metrics["table"]
    assert "source + stage-1 synthetic" in table and "aligned − stage-1 synthetic" in table and "95 % CI" in table
    assert "patch SWD ×1000 to held-out target, low-pass" in table
    stored = json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())
    assert stored["target_test_differences"].keys() == metrics["target_test_differences"].keys()
    assert "paired mDice difference" in (tmp_path / "demo" / "run" / "report.html").read_text()
    assert (tmp_path / "demo" / "run" / "synthetic_stage1" / "manifest.json").is_file()
