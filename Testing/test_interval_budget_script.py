"""bench/interval_budget.py on a planted benchmark folder: the between-sequence part and its brightness link."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SPEC = importlib.util.spec_from_file_location("interval_budget",
                                              Path(__file__).resolve().parents[1] / "bench" / "interval_budget.py")
budget_script = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(budget_script)


def test_sequence_effects_that_follow_brightness_are_found(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"f{i:03d}" for i in range(72)]
    # 12 sequences of 6 frames, listed shuffled: "seq10" sorts before "seq2", so an order mix-up would show.
    clusters = list(rng.permutation([f"seq{i // 6}" for i in range(72)]))
    level = {f"seq{c}": 40 + 15 * c for c in range(12)}                # each sequence its own brightness
    images = tmp_path / "test_images"
    images.mkdir()
    for name, cluster in zip(names, clusters):
        Image.fromarray(np.full((20, 24, 3), level[cluster], np.uint8)).save(images / f"{name}.png")
    # AlignFlow's gain falls with brightness (planted), plus seed noise; stage 1 and source only are flat.
    gain = np.array([0.2 - 0.002 * level[c] for c in clusters])
    base = {"3": [0.5] * 72, "4": [0.5] * 72, "5": [0.5] * 72}
    dice = {"source_only": {"all": base}, "stage1_synthetic": {"all": base}, "alignflow": {
        f"K10_seed{r}": {s: list(0.5 + gain + rng.normal(0, 0.01, 72)) for s in base} for r in range(3)}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "per_image_dice.json").write_text(json.dumps({"test_names": names, "clusters": clusters, "dice": dice}))

    result = budget_script.budget_of_run(run, images)
    row = result["K10"]["stage1_synthetic"]
    assert row["mean_diff"] == pytest.approx(100 * gain.mean(), abs=0.5)
    assert row["sd_clusters"] > 5 and row["sd_seeds"] < 1             # the planted spread is between sequences
    assert row["half_width_floor"] == pytest.approx(row["half_width_many_seeds"], rel=0.05)
    assert row["brightness_correlation"] < -0.95
    assert set(row["sequences"]) == set(level)
    brightest = max(row["sequences"].values(), key=lambda entry: entry["brightness"])
    assert brightest["mean_diff"] == pytest.approx(100 * (0.2 - 0.002 * 205), abs=1.0)
    assert row["sequences"]["seq2"]["mean_diff"] == pytest.approx(100 * (0.2 - 0.002 * 70), abs=1.0)
    assert "source_only" in result["K10"]
    assert "brightness_correlation" not in budget_script.budget_of_run(run)["K10"]["stage1_synthetic"]
