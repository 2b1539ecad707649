"""The benchmark harness on a phantom stand-in laid out like ../shared/data/polyp (never the real data in CI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from AlignFlowLib.bench.methods import METHODS
from AlignFlowLib.bench.polyp import aggregate, run_polyp_benchmark, target_checks
from AlignFlowLib.bench.report import README_BEGIN, README_END, ablation_table, readme_section, readme_table
from AlignFlowLib.errors import InputDataError, RunFolderError, UsageError
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
    report = (out / "report.html").read_text()
    assert report.count("<table>") >= 3 and "K10_seed0: references" in report and "<svg" in report
    assert "source + AlignFlow synthetic" in readme_table(tmp_path / "results")
    assert results["commit"]
    assert all(saved["methods"][m]["by_k"]["K10"]["num_runs"] == 2 for m in METHODS)  # two segmenter seeds
    assert {"K5", "K10", "k5_minus_k10_abs", "met"} <= set(saved["targets"])
    assert saved["judge_source_val"]["mdice"] >= 0

    # An ablation: stage 1 reused, one setting changed, AlignFlow only; kept out of the main README table.
    ablation_out = tmp_path / "results" / "smoke-ablation"
    ablation = run_polyp_benchmark(fake_polyp, ablation_out, "smoke", device=__import__("torch").device("cpu"),
                                   overrides=("align.anchor_weight=2",), methods=("alignflow",), reuse_stage1=out,
                                   reference_sets=("K10_seed0",))
    assert set(ablation["methods"]) == {"alignflow"} and ablation["config"]["align"]["anchor_weight"] == 2.0
    assert set(ablation["generator"]) == {"K10_seed0"} and ablation["reference_sets"] == ["K10_seed0"]
    assert ablation["wall_time_s"]["source_segmenter"] < results["wall_time_s"]["source_segmenter"]  # judge reused
    assert ablation["wall_time_s"]["stage1"] < results["wall_time_s"]["stage1"]
    assert "smoke-ablation" in ablation_table(tmp_path / "results")
    assert "smoke-ablation" not in readme_table(tmp_path / "results")
    with pytest.raises(RunFolderError):  # other stage-1 settings cannot reuse those generators
        run_polyp_benchmark(fake_polyp, tmp_path / "other", "smoke", device=__import__("torch").device("cpu"),
                            overrides=("image_generator.num_steps=41",), methods=("alignflow",), reuse_stage1=out)
    with pytest.raises(InputDataError, match="K7_seed0"):
        run_polyp_benchmark(fake_polyp, tmp_path / "bad", "smoke", device=__import__("torch").device("cpu"),
                            reference_sets=("K7_seed0",))
    with pytest.raises(UsageError):
        run_polyp_benchmark(fake_polyp, tmp_path / "bad", "smoke", device=__import__("torch").device("cpu"),
                            methods=("alignflow", "magic"))


def test_aggregate_spreads_over_every_segmenter():
    per_set = {"K10_seed0": {"mdice": 0.5, "miou": 0.4, "runs": [{"mdice": 0.4, "miou": 0.3},
                                                                 {"mdice": 0.6, "miou": 0.5}]},
               "K10_seed1": {"mdice": 0.7, "miou": 0.6, "runs": [{"mdice": 0.7, "miou": 0.6}]},
               "K5_seed0": {"mdice": 0.2, "miou": 0.1}}
    by_k = aggregate(per_set)
    assert by_k["K10"]["mdice_mean"] == pytest.approx(0.6) and by_k["K10"]["num_runs"] == 3
    assert by_k["K10"]["mdice_std"] == pytest.approx(0.1247, abs=1e-4)  # pstdev of 0.4, 0.6, 0.7
    assert by_k["K5"] == {"mdice_mean": 0.2, "mdice_std": 0.0, "miou_mean": 0.1, "miou_std": 0.0,
                          "num_seeds": 1, "num_runs": 1}


def test_target_checks_compare_with_the_best_non_generative_baseline():
    def method(k10: float, k5: float | None = None) -> dict:
        by_k = {"K10": {"mdice_mean": k10, "miou_mean": k10 - 0.1}}
        if k5 is not None:
            by_k["K5"] = {"mdice_mean": k5, "miou_mean": k5 - 0.1}
        return {"by_k": by_k}

    methods = {"source_only": method(0.50, 0.50), "fda": method(0.53, 0.52), "alignflow": method(0.56, 0.545)}
    generator = {"K10_seed0": {"stage1": {"kid_el0": 4.0}, "aligned": {"kid_el0": 1.0}},
                 "K5_seed0": {"stage1": {"kid_el0": 4.0}, "aligned": {"kid_el0": 3.0}}}
    checks = target_checks(methods, generator)
    assert checks["K10"]["mdice_gain_over_source_only"] == pytest.approx(6.0)
    assert checks["K10"]["best_non_generative"] == "fda"
    assert checks["K10"]["mdice_gain_over_best_non_generative"] == pytest.approx(3.0)
    assert checks["K10"]["kid_ratio_aligned_to_stage1"] == pytest.approx(0.25)
    assert checks["k5_minus_k10_abs"] == pytest.approx(1.5)
    met = checks["met"]
    assert met["mdice_gain_over_source_only"] is True        # K10 +6.0, K5 +4.5
    assert met["mdice_gain_over_best_non_generative"] is True  # K10 +3.0, K5 +2.5
    assert met["kid_ratio_aligned_to_stage1"] is False        # K5 only reached 0.75
    assert met["k5_minus_k10_abs"] is False


def test_readme_results_are_generated_from_the_committed_json():
    """The README's results tables must be exactly what the committed results files say."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    assert readme[start:end] == readme_section(root / "bench" / "results"), \
        "README results are stale: run `python bench/update_readme.py`"
