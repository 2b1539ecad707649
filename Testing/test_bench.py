"""The benchmark harness on a phantom stand-in laid out like ../shared/data/polyp (never the real data in CI)."""

from __future__ import annotations

import json
import shutil

import pytest

from AlignFlowLib.bench.polyp import METHODS, run_polyp_benchmark
from AlignFlowLib.bench.report import readme_table
from AlignFlowLib.data.phantoms import write_phantom_dataset


@pytest.fixture()
def fake_polyp(tmp_path):
    paths = write_phantom_dataset(tmp_path / "phantoms", size_px=32, num_source=60, num_references=0,
                                  num_target_test=50, seed=5)
    root = tmp_path / "polyp"
    shutil.copytree(paths.source, root / "src_ds")
    shutil.copytree(paths.target_test, root / "tgt_ds")
    source_ids = sorted(p.stem for p in (root / "src_ds" / "images").glob("*.png"))
    target_ids = sorted(p.stem for p in (root / "tgt_ds" / "images").glob("*.png"))
    pool, test = target_ids[:20], target_ids[20:]
    # Poison the reference pool's masks: the benchmark must never read them.
    for stem in pool:
        (root / "tgt_ds" / "masks" / f"{stem}.png").write_bytes(b"reference masks must not be read")
    splits = {"source": {"dataset": "src_ds", "train": source_ids[:50], "val": source_ids[50:]},
              "target": {"dataset": "tgt_ds", "reference_pool": pool, "test": test,
                         "references": {"K10_seed0": pool[:10], "K5_seed0": pool[10:15], "K1_seed0": pool[15:16]}}}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_smoke_benchmark_writes_every_method(fake_polyp, tmp_path):
    out = tmp_path / "results" / "smoke-cpu"
    results = run_polyp_benchmark(fake_polyp, out, "smoke", device=__import__("torch").device("cpu"))
    saved = json.loads((out / "results.json").read_text())
    assert saved["preset"] == "smoke" and saved["num_test_images"] == 30
    for method in METHODS:
        for k in ("K5", "K10"):
            scores = saved["methods"][method]["by_k"][k]
            assert 0 <= scores["mdice_mean"] <= 1 and 0 <= scores["miou_mean"] <= scores["mdice_mean"] + 1e-9
    assert set(saved["generator"]) == {"K5_seed0", "K10_seed0"}
    assert {"stage1", "align", "segmenters", "total"} <= set(saved["wall_time_s"])
    assert (out / "report.html").read_text().count("<table>") >= 2
    assert "source + AlignFlow synthetic" in readme_table(tmp_path / "results")
    assert results["commit"]
