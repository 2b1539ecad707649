"""The benchmark protocol on phantom stand-ins laid out like ../shared/data/polyp (never the real data in CI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from AlignFlowLib.bench.pairs import draw_reference_sets
from AlignFlowLib.bench.polyp import run_polyp_benchmark
from AlignFlowLib.bench.protocol import load_protocol, pairs_made, summarize_method, win_checks
from AlignFlowLib.bench.report import README_BEGIN, README_END, ablation_table, readme_section, readme_table
from AlignFlowLib.bench.stats import interval_budget, paired_difference
from AlignFlowLib.checkpoint import load_checkpoint
from AlignFlowLib.config import SegmenterConfig, SynthesisConfig, to_dict
from AlignFlowLib.cli import main
from AlignFlowLib.data.folders import ImageSet, PairSet
from AlignFlowLib.data.phantoms import write_phantom_dataset
from AlignFlowLib.errors import InputDataError, RunFolderError, UsageError

CPU = torch.device("cpu")


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
    # Test frames in "video sequences" of five, as sequences.json groups CVC-ClinicDB.
    (root / "tgt_ds" / "sequences.json").write_text(json.dumps({s: i // 5 for i, s in enumerate(target_ids)}))
    splits = {"source": {"dataset": "src_ds", "train": source_ids[:50], "val": source_ids[50:]},
              "target": {"dataset": "tgt_ds", "reference_pool": pool, "test": test,
                         "references": {"K10_seed0": pool[:10], "K5_seed0": pool[10:15], "K1_seed0": pool[15:16]}}}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_smoke_protocol_pairs_every_method_and_resumes(fake_polyp, tmp_path):
    out = tmp_path / "results" / "smoke-cpu"
    results = run_polyp_benchmark(fake_polyp, out, "smoke", CPU)
    saved = json.loads((out / "results.json").read_text())
    assert saved["preset"] == "smoke" and saved["num_test_images"] == 30 and saved["num_test_clusters"] == 6
    for method in load_protocol()["methods"]:
        for k in ("K5", "K10"):
            scores = saved["methods"][method]["by_k"][k]
            assert 0 <= scores["mdice_mean"] <= 1 and 0 <= scores["miou_mean"] <= scores["mdice_mean"] + 1e-9
            assert scores["num_runs"] == 2  # two shared segmenter seeds; reference-free methods counted once
    paired = saved["methods"]["alignflow"]["by_k"]["K10"]["paired"]
    assert {"source_only", "stage1_synthetic", "fda", "best_non_generative"} <= set(paired)
    for entry in paired.values():
        assert entry["ci_low"] <= entry["mean_diff"] <= entry["ci_high"]
        assert entry["num_clusters"] == 6 and entry["num_seeds"] == 2 and entry["num_images"] == 30
    assert paired["best_non_generative"]["method"] in load_protocol()["non_generative"]
    # The paired difference is exactly the difference of the method means (same sets, seeds and images).
    mean = saved["methods"]["alignflow"]["by_k"]["K10"]["mdice_mean"]
    assert paired["source_only"]["mean_diff"] == pytest.approx(
        mean - saved["methods"]["source_only"]["by_k"]["K10"]["mdice_mean"], abs=1e-5)  # per-image Dice rounded
    check = saved["recipe_check"]
    assert check["chosen"] == ("preferred" if check["passed"] else "alternative")
    assert check["passed"] == (check["source_val_mdice_preferred"]
                               >= check["source_val_mdice_alternative"] - check["max_source_val_loss"])
    # Every method used the recipe that source validation chose (preferred: strong augmentation).
    assert saved["config"]["segmenter"]["strong_augment"] is (check["chosen"] == "preferred")
    assert {"K5", "K10", "k5_minus_k10_abs", "all_met"} <= set(saved["win"])
    jobs = [json.loads(path.read_text()) for path in (out / "jobs").rglob("*.json")]
    assert jobs and all(job["cpu_threads"] == torch.get_num_threads() for job in jobs)  # no workers: this process
    per_image = json.loads((out / "per_image_dice.json").read_text())
    assert len(per_image["dice"]["alignflow"]["K10_seed0"]["3"]) == 30 and len(per_image["clusters"]) == 30
    assert saved["align_selection"]["K10_seed0"]["num_references"] == 10
    assert saved["align_selection"]["K10_seed0"]["criterion"] == "held-out MMD²"  # the protocol's default choice
    assert saved["align_selection"]["rule"].startswith("held-out MMD²")
    report = (out / "report.html").read_text()
    assert report.count("<table>") >= 4 and "K10_seed0: references" in report
    assert "K10_seed0: held-out MMD² during alignment" in report
    assert len(saved["generator"]["K10_seed0"]["aligned"]["patch_swd"]) == 3 and "patch SWD × 1000" in report
    table = readme_table(tmp_path / "results")
    assert "source + AlignFlow synthetic" in table
    assert f"protocol version {load_protocol()['version']}, preset `smoke`" in table  # which settings made it
    assert results["commit"]

    # Cut off after the jobs: --resume finishes from the job table and gives the same numbers.
    (out / "results.json").unlink()
    with pytest.raises(RunFolderError):
        run_polyp_benchmark(fake_polyp, out, "smoke", CPU)
    again = run_polyp_benchmark(fake_polyp, out, "smoke", CPU, resume=True)
    assert again["methods"]["alignflow"]["by_k"]["K10"] == saved["methods"]["alignflow"]["by_k"]["K10"]
    assert again["wall_time_s"].get("segmenters", 0) == 0 and again["wall_time_s"].get("align", 0) == 0
    assert again["wall_time_s"].get("synthesis", 0) == 0  # nothing sampled: no pairs and no alignment masks

    # The same jobs in 2 worker processes: the job table (OUT/jobs) is filled by the workers, one reference set is
    # aligned again in a worker, and the scores match those trained here (up to the float order of 1 thread per
    # worker instead of 2).
    spread = tmp_path / "results" / "smoke-workers"
    shutil.copytree(out, spread)
    shutil.rmtree(spread / "jobs" / "alignflow" / "K5_seed0")
    shutil.rmtree(spread / "aligned" / "K5_seed0")
    (spread / "results.json").unlink()
    events: list[dict] = []
    in_workers = run_polyp_benchmark(fake_polyp, spread, "smoke", CPU, events.append, resume=True, workers=2)
    assert in_workers["wall_time_s"].get("segmenters", 0) == 0  # none trained in this process
    assert "align_wait" in in_workers["wall_time_s"] and "align" not in in_workers["wall_time_s"]
    assert not [e for e in events if e.get("stage") == "align"]  # K5_seed0 was aligned in a worker
    assert not (spread / "aligned" / "K5_seed0" / "align_state.pt").exists()  # dropped once the set is done
    assert len(list((spread / "jobs" / "alignflow" / "K5_seed0").glob("*.json"))) == 2  # the 2 seeds, again
    realigned, original = (json.loads((folder / "aligned" / "K5_seed0" / "align_summary.json").read_text())
                           for folder in (spread, out))
    assert (realigned["best_step"], realigned["num_references"]) == (original["best_step"], 5)
    assert original["best_step"] > 0  # else both updates below are zero
    assert realigned["heldout_mmd"] == pytest.approx(original["heldout_mmd"], rel=1e-3, abs=1e-5)
    # The same alignment: the two updates from stage 1 differ by < 1 % of their size (float order of 1 thread
    # against 2, which Adam's normalised steps amplify per weight; measured 0.04 %, another reference set ~13 %).
    stage1 = next((out / "run" / "checkpoints").glob("image_generator*.pt"))
    here, there, start = (torch.cat([w.flatten() for w in load_checkpoint(path)[key].values() if w.is_floating_point()])
                          for path, key in ((out / "aligned" / "K5_seed0" / "aligned_generator.pt", "model"),
                                            (spread / "aligned" / "K5_seed0" / "aligned_generator.pt", "model"),
                                            (stage1, "ema")))
    assert (here - there).norm() < 0.01 * (here - start).norm()
    assert not (spread / "run" / "checkpoints" / "aligned_generator.pt").exists()  # sets never share a file
    for name, entry in saved["methods"]["alignflow"]["per_set"].items():
        for mine, theirs in zip(in_workers["methods"]["alignflow"]["per_set"][name]["runs"], entry["runs"]):
            assert mine["seed"] == theirs["seed"] and mine["mdice"] == pytest.approx(theirs["mdice"], abs=0.03)
    assert in_workers["methods"]["source_only"] == saved["methods"]["source_only"]

    # More segmenter seeds on a finished run: only the new seed's jobs train; the recipe check keeps the preset's 2.
    more = tmp_path / "results" / "smoke-more-seeds"
    shutil.copytree(out, more)
    (more / "results.json").unlink()
    wider = run_polyp_benchmark(fake_polyp, more, "smoke", CPU, resume=True, segmenter_seeds=3,
                                methods=("source_only", "stage1_synthetic", "alignflow"))
    assert wider["segmenter_seeds"] == 3 and wider["recipe_check"] == saved["recipe_check"]
    assert wider["methods"]["alignflow"]["by_k"]["K10"]["paired"]["stage1_synthetic"]["num_seeds"] == 3
    assert len(list((more / "jobs" / "source_only" / "all").glob("seed5-*.json"))) == 1  # chosen recipe only
    assert len(list((more / "jobs" / "source_only" / "all").glob("seed4-*.json"))) == 2  # both from the check
    for mine, theirs in zip(wider["methods"]["alignflow"]["per_set"]["K10_seed0"]["runs"],
                            saved["methods"]["alignflow"]["per_set"]["K10_seed0"]["runs"]):
        assert mine == theirs  # seeds 3 and 4 read back, not retrained
    assert wider["methods"]["alignflow"]["per_set"]["K10_seed0"]["runs"][-1]["seed"] == 5
    # Not the preset's 2; the row names the data folder the run recorded.
    assert wider["data"] == {"root": str(fake_polyp)}
    assert (f"smoke-more-seeds | kvasir_seg -> cvc_clinicdb ({fake_polyp.name}) | --segmenter-seeds 3"
            in ablation_table(tmp_path / "results"))
    assert "smoke-more-seeds" not in readme_table(tmp_path / "results")

    # A copy resumed with other synthesis settings stops instead of scoring the pairs it holds as if they were new.
    stale = tmp_path / "results" / "smoke-stale"
    shutil.copytree(out, stale)
    (stale / "results.json").unlink()
    with pytest.raises(RunFolderError, match="judge_keep_fraction"):
        run_polyp_benchmark(fake_polyp, stale, "smoke", CPU, resume=True, methods=("stage1_synthetic",),
                            overrides=("synthesis.judge_keep_fraction=0.5",))

    # An ablation: stage 1 reused, one setting changed; kept out of the main README table.
    # The judge is copied too when its recipe matches, read through the config class: a recipe recorded before a
    # segmenter setting existed (here: one dropped, at its default) still matches.
    judge_json = out / "run" / "source_segmenter" / "exported" / "model.json"
    meta = json.loads(judge_json.read_text())
    recipe = meta["training_summary"]["config"]
    del recipe[next(key for key, value in recipe.items() if getattr(SegmenterConfig(), key) == value)]
    judge_json.write_text(json.dumps(meta))
    ablation_out = tmp_path / "results" / "smoke-ablation"
    ablation_events: list[dict] = []
    ablation = run_polyp_benchmark(fake_polyp, ablation_out, "smoke", CPU, ablation_events.append,
                                   overrides=("align.anchor_weight=2",), methods=("stage1_synthetic", "alignflow"),
                                   reuse_stage1=out, reference_sets=("K10_seed0",))
    assert not [e for e in ablation_events if e.get("stage") == "source_segmenter"]  # the judge was not retrained
    assert set(ablation["methods"]) == {"stage1_synthetic", "alignflow"}
    assert ablation["config"]["align"]["anchor_weight"] == 2.0 and ablation["reference_sets"] == ["K10_seed0"]
    assert ablation["wall_time_s"]["stage1"] < results["wall_time_s"]["stage1"]
    assert "smoke-ablation" in ablation_table(tmp_path / "results")
    assert "smoke-ablation" not in readme_table(tmp_path / "results")
    with pytest.raises(RunFolderError):  # other stage-1 settings cannot reuse those generators
        run_polyp_benchmark(fake_polyp, tmp_path / "other", "smoke", CPU, overrides=("image_generator.num_steps=41",),
                            methods=("alignflow",), reuse_stage1=out)
    with pytest.raises(InputDataError, match="K7_seed0"):
        run_polyp_benchmark(fake_polyp, tmp_path / "bad", "smoke", CPU, reference_sets=("K7_seed0",))
    with pytest.raises(UsageError):
        run_polyp_benchmark(fake_polyp, tmp_path / "bad", "smoke", CPU, methods=("alignflow", "magic"))


def test_bench_pairs_runs_the_protocol_on_plain_folders(tmp_path, capsys):
    paths = write_phantom_dataset(tmp_path / "data", size_px=32, num_source=40, num_references=4,
                                  num_target_test=12, seed=2)
    out = tmp_path / "out"
    code = main(["bench", "pairs", "--source", str(paths.source), "--pool", str(paths.references), "--test",
                 str(paths.target_test), "--preset", "smoke", "--device", "cpu", "--out", str(out),
                 "--methods", "source_only,stage1_synthetic,alignflow", "--progress", "jsonl"])
    assert code == 0, capsys.readouterr().out[-2000:]
    saved = json.loads((out / "results.json").read_text())
    # Four pool images: K = 1 is drawn (3 seeds), K = 5 and K = 10 are skipped.
    assert saved["reference_sets"] == ["K1_seed0", "K1_seed1", "K1_seed2"]
    assert set(saved["methods"]["alignflow"]["by_k"]) == {"K1"}
    assert saved["num_test_clusters"] == 12  # no cluster file: one cluster per image
    assert saved["data"] == {"source": str(paths.source), "source_val": None, "pool": str(paths.references),
                             "test": str(paths.target_test), "clusters": None}
    assert saved["protocol_version"] == load_protocol()["version"]
    assert saved["methods"]["alignflow"]["by_k"]["K1"]["paired"]["stage1_synthetic"]["num_reference_sets"] == 3
    assert main(["bench", "pairs", "--source", str(paths.source), "--preset", "smoke", "--device", "cpu",
                 "--out", str(tmp_path / "x")]) == 2  # --pool and --test are required for pairs

    # An ablation on the same folders: one drawn set, stage 1 reused (not retrained), the reward changed, and pairs
    # translated from real source pairs, by stage 1 for the control and by the aligned generator for AlignFlow.
    folders = ["bench", "pairs", "--source", str(paths.source), "--pool", str(paths.references), "--test",
               str(paths.target_test), "--preset", "smoke", "--device", "cpu", "--progress", "jsonl"]
    ablation = tmp_path / "ablation"
    capsys.readouterr()
    code = main(folders + ["--out", str(ablation), "--reuse-stage1", str(out), "--references", "K1_seed1",
                           "--methods", "stage1_synthetic,alignflow", "--set", "align.style_weight=2",
                           "--set", "synthesis.mask_source=source", "--set", "synthesis.start_time=0.5"])
    printed = capsys.readouterr().out
    assert code == 0, printed[-2000:]
    saved = json.loads((ablation / "results.json").read_text())
    assert saved["reference_sets"] == ["K1_seed1"] and saved["stage1_reused_from"] == str(out)
    events = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    trained = {e.get("stage") for e in events if e.get("event") == "progress"}
    assert "align" in trained and not trained & {"image_generator", "mask_generator"}  # stage 1 copied, not trained
    for pairs in (ablation / "stage1_pairs", ablation / "aligned" / "K1_seed1" / "pairs_source_masks"):
        made = json.loads((pairs / "manifest.json").read_text())
        assert made["config"]["start_time"] == 0.5 and made["config"]["mask_source"] == "source", pairs
    # The ablation table names the pair and the folder both sides were read from.
    assert (f"| ablation | {paths.source.name} -> {paths.target_test.name} ({paths.source.parent.name}) |"
            in ablation_table(tmp_path))
    assert main(folders + ["--out", str(tmp_path / "y"), "--references", "K5_seed0"]) == 3  # not drawn from 4 images
    # A folder made before versions were stored (all version 1) keeps saying so when resumed: its settings win.
    config_path = out / "run" / "config.json"
    stored = json.loads(config_path.read_text())
    del stored["inputs"]["protocol_version"]
    config_path.write_text(json.dumps(stored))
    assert main(folders + ["--out", str(out), "--resume", "--methods", "source_only,stage1_synthetic,alignflow"]) == 0
    assert json.loads((out / "results.json").read_text())["protocol_version"] == 1
    other = write_phantom_dataset(tmp_path / "other", size_px=32, num_source=30, num_references=4,
                                  num_target_test=12, seed=3)
    assert main(["bench", "pairs", "--source", str(other.source), "--pool", str(other.references), "--test",
                 str(other.target_test), "--preset", "smoke", "--device", "cpu", "--out", str(tmp_path / "z"),
                 "--reuse-stage1", str(out)]) == 4  # a stage 1 trained on other source pairs is refused
    assert main(["bench", "pairs", "--source", str(other.source), "--pool", str(paths.references), "--test",
                 str(paths.target_test), "--preset", "smoke", "--device", "cpu", "--out", str(out),
                 "--resume"]) == 4  # nor may a folder that copied other source pairs continue with these


def test_pair_folders_count_as_made_only_with_the_same_synthesis_settings(tmp_path):
    made = tmp_path / "pairs"
    made.mkdir()
    old = to_dict(SynthesisConfig(num_pairs=4))
    del old["judge_keep_fraction"]  # a manifest written before that setting existed, at its default
    (made / "manifest.json").write_text(json.dumps({"config": old}))
    assert not pairs_made(tmp_path / "none", SynthesisConfig(num_pairs=4))
    assert pairs_made(made, SynthesisConfig(num_pairs=4, batch_size=7))  # batch size changes no pair
    with pytest.raises(RunFolderError, match=r"\(judge_keep_fraction, num_pairs\)"):
        pairs_made(made, SynthesisConfig(num_pairs=5, judge_keep_fraction=0.5))


def test_reference_sets_are_drawn_reproducibly_from_the_pool():
    pool = ImageSet(torch.arange(12.0).view(12, 1, 1, 1), [f"img{i:02d}" for i in range(12)])
    sets = draw_reference_sets(pool, [1, 5, 10, 20], [0, 1])
    assert sorted(sets) == ["K10_seed0", "K10_seed1", "K1_seed0", "K1_seed1", "K5_seed0", "K5_seed1"]
    assert len(set(sets["K5_seed0"].names)) == 5 and sets["K5_seed0"].names != sets["K5_seed1"].names
    shuffled = ImageSet(pool.images.flip(0), pool.names[::-1])  # listing order must not matter
    assert draw_reference_sets(shuffled, [5], [1])["K5_seed1"].names == sets["K5_seed1"].names


def test_paired_bootstrap_known_answers():
    rng = np.random.default_rng(0)
    clusters = [f"c{i // 10}" for i in range(100)]
    base = rng.random((3, 3, 100))
    shifted = paired_difference(base + 0.05, base, clusters)
    assert shifted.mean_diff == pytest.approx(0.05) and shifted.ci_low == pytest.approx(0.05)
    same = paired_difference(base, base, clusters)
    assert same.mean_diff == same.ci_low == same.ci_high == 0.0
    # A cluster-level effect (+0.1 on half the clusters) is not resolved as if the 100 frames were independent.
    effect = np.where(np.array([int(c[1:]) % 2 for c in clusters]) == 1, 0.1, -0.1) + 0.01
    clustered = paired_difference(base + effect, base, clusters, seed=1)
    frames = paired_difference(base + effect, base, [str(i) for i in range(100)], seed=1)
    assert clustered.ci_high - clustered.ci_low > 2 * (frames.ci_high - frames.ci_low)
    with pytest.raises(ValueError):
        paired_difference(base, base[:, :2], clusters)


def _layered_scores(sd_clusters: float, sd_sets: float, sd_seeds: float, sd_residual: float, seed: int = 0,
                    sd_set_seed: float = 0.0, num_clusters: int = 120):
    """(reference sets 6, seeds 8, images) differences built from known components; 2 images per cluster."""
    rng = np.random.default_rng(seed)
    clusters = [f"seq{i // 2}" for i in range(2 * num_clusters)]
    cells = (rng.normal(0, sd_clusters, num_clusters)[None, None, :] + rng.normal(0, sd_sets, (6, 1, 1))
             + rng.normal(0, sd_seeds, (1, 8, 1)) + rng.normal(0, sd_set_seed, (6, 8, 1))
             + rng.normal(0, sd_residual, (6, 8, num_clusters)))
    return np.repeat(cells, 2, axis=-1) + 1.0, clusters


def test_interval_budget_recovers_known_components_and_its_floor():
    diff, clusters = _layered_scores(sd_clusters=3.0, sd_sets=1.0, sd_seeds=2.0, sd_residual=1.0, sd_set_seed=2.0)
    budget = interval_budget(diff, np.zeros_like(diff), clusters)
    assert (budget.num_clusters, budget.num_reference_sets, budget.num_seeds) == (120, 6, 8)
    assert budget.sd_clusters == pytest.approx(3.0, rel=0.2)
    assert budget.sd_seeds == pytest.approx(2.0, rel=0.5)
    assert budget.sd_reference_sets == pytest.approx(1.0, rel=0.6)
    assert budget.sd_set_seed == pytest.approx(2.0, rel=0.3) and budget.sd_residual == pytest.approx(1.0, rel=0.1)
    # More seeds narrow the interval towards the floor that the clusters leave once sets are many too.
    assert budget.half_width() > budget.half_width(num_seeds=24) > budget.half_width(10 ** 9, 10 ** 9)
    assert budget.half_width(10 ** 9, 10 ** 9) == pytest.approx(budget.floor(), rel=1e-3)
    assert budget.detectable_effect() > budget.half_width()  # 80 % power asks for more than the half-width
    # The normal approximation explains the bootstrap interval the protocol reports (same width within a third).
    boot = paired_difference(diff, np.zeros_like(diff), clusters)
    assert (boot.ci_high - boot.ci_low) / 2 == pytest.approx(budget.half_width(), rel=0.35)
    with pytest.raises(ValueError):
        interval_budget(diff[:, :, :10], np.zeros_like(diff[:, :, :10]), clusters)
    with pytest.raises(ValueError):
        interval_budget(diff, np.zeros_like(diff[:, :4]), clusters)


def test_interval_budget_does_not_mistake_noise_for_structure():
    # Only per-image noise (SD 10): with many clusters, its share of the cluster mean square is taken out ...
    noise, clusters = _layered_scores(0.0, 0.0, 0.0, sd_residual=10.0, seed=3, num_clusters=200)
    budget = interval_budget(noise, np.zeros_like(noise), clusters)
    assert budget.sd_residual == pytest.approx(10.0, rel=0.05)
    assert budget.sd_clusters < 1.0 and budget.floor() < 0.15  # without the correction: SD 1.4
    # ... and with few clusters each segmenter's mean carries noise/clusters, which is not a set × seed effect.
    few, few_clusters = _layered_scores(0.0, 0.0, 0.0, sd_residual=10.0, seed=3, num_clusters=20)
    assert interval_budget(few, np.zeros_like(few), few_clusters).sd_set_seed < 1.5  # without it: 2.2
    # No seed effect planted: none found.
    seedless, seedless_clusters = _layered_scores(sd_clusters=3.0, sd_sets=1.0, sd_seeds=0.0, sd_residual=1.0, seed=2)
    assert interval_budget(seedless, np.zeros_like(seedless), seedless_clusters).sd_seeds < 0.3


def test_summary_counts_reference_free_runs_once_and_win_rule_needs_the_interval():
    runs = [{"reference_set": "all", "seed": s, "mdice": 0.5 + 0.1 * s, "miou": 0.4} for s in range(2)]
    by_k = summarize_method({"K5_seed0": runs, "K5_seed1": runs})
    assert by_k["K5"]["num_runs"] == 2 and by_k["K5"]["mdice_mean"] == pytest.approx(0.55)

    def diff(mean, low):
        return {"mean_diff": mean, "ci_low": low, "ci_high": mean + 0.01}

    good = {"stage1_synthetic": diff(0.04, 0.01), "source_only": diff(0.07, 0.02),
            "best_non_generative": {**diff(0.04, 0.01), "method": "fda"}}
    wide = {**good, "stage1_synthetic": diff(0.04, -0.01)}  # big enough on average, interval crosses 0
    means = {"K5": {"mdice_mean": 0.6}, "K10": {"mdice_mean": 0.605}}
    assert win_checks({"K5": good, "K10": good}, means, {})["all_met"] is True
    checks = win_checks({"K5": good, "K10": wide}, means, {})
    assert checks["all_met"] is False and checks["K10"]["stage1_synthetic"]["met"] is False
    assert win_checks({"K5": good, "K10": good}, {"K5": {"mdice_mean": 0.6}, "K10": {"mdice_mean": 0.62}},
                      {})["k5_minus_k10_abs"]["met"] is False


def test_readme_results_are_generated_from_the_committed_json():
    """The README's results tables must be exactly what the committed results files say."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    assert readme[start:end] == readme_section(root / "bench" / "results"), \
        "README results are stale: run `python bench/update_readme.py`"


def test_cancelling_the_worker_pool_stops_running_jobs_before_it_returns():
    """A cancelled benchmark must not leave a worker writing into its folder after it has exited: close(cancel)
    stops a running job at its next progress event (a job of a million steps here) and only then returns."""
    import time
    from concurrent.futures import CancelledError

    from AlignFlowLib.bench.workers import WorkerPool
    from AlignFlowLib.config import SegmenterConfig
    from AlignFlowLib.errors import CancelledByUser

    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(4, 1, 16, 16, generator=g) > 0.5).float()
    pairs = PairSet(masks * 2 - 1, masks, [str(i) for i in range(4)])
    pool = WorkerPool(2, CPU, pairs, pairs, None)
    endless = SegmenterConfig(architecture="unet", num_steps=10**6, batch_size=2)
    job = pool.submit("source_only", "all", endless, None, True)
    deadline = time.monotonic() + 60
    while not job.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # let the worker pick it up (a job handed over but not started stops when it starts)
    started = time.monotonic()
    pool.close(cancel=True)
    assert time.monotonic() - started < 120
    with pytest.raises((CancelledByUser, CancelledError)):
        job.result(timeout=0)


class _CutOff(Exception):
    pass


def test_a_cut_off_reference_set_alignment_resumes_from_its_set_folder(phantom_paths, tmp_path):
    """The benchmark aligns each reference set into its own folder; a run cut off mid-alignment (here at step 3,
    after the checkpoint at step 2) must continue from that folder's state and end where an uninterrupted one does."""
    from AlignFlowLib import pipeline
    from AlignFlowLib.bench.workers import align_reference_set
    from AlignFlowLib.data.folders import load_pairs
    from conftest import tiny_config

    config = tiny_config(image_steps=20, mask_steps=10, align_steps=6, segmenter_steps=20)
    run, config, _ = pipeline.start_run(tmp_path / "run", config, {"source": str(phantom_paths.source)}, resume=False)
    pipeline.train_generators(run, CPU)
    masks = load_pairs(phantom_paths.source, config.data).masks[:32]
    straight = align_reference_set(run.root, phantom_paths.references, tmp_path / "straight", CPU, masks)

    def cut_at_step_3(event: dict) -> None:
        if event.get("stage") == "align" and event.get("step") == 3:
            raise _CutOff

    cut = tmp_path / "cut"
    with pytest.raises(_CutOff):
        align_reference_set(run.root, phantom_paths.references, cut, CPU, masks, on_event=cut_at_step_3)
    assert load_checkpoint(cut / "align_state.pt")["step"] == 2 and not (cut / "align_summary.json").exists()
    events: list[dict] = []
    resumed = align_reference_set(run.root, phantom_paths.references, cut, CPU, masks, on_event=events.append)
    assert [e["message"] for e in events if "resumed" in e.get("message", "")] == ["resumed from step 2"]
    assert not (cut / "align_state.pt").exists()
    assert json.loads((cut / "align_summary.json").read_text()) == resumed
    assert (resumed["best_step"], resumed["eval_step"]) == (straight["best_step"], straight["eval_step"])
    assert resumed["heldout_mmd"] == pytest.approx(straight["heldout_mmd"], rel=1e-5)
    here, there = (load_checkpoint(folder / "aligned_generator.pt")["model"] for folder in (cut, tmp_path / "straight"))
    assert all(torch.allclose(here[key], there[key], atol=1e-6) for key in here)


def test_a_presets_precision_choice_holds_only_while_it_runs(fake_polyp, tmp_path, monkeypatch):
    from AlignFlowLib import device
    from AlignFlowLib.device import process_settings

    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: True)  # so the preset's choice shows on any CPU
    before = process_settings()
    seen: list[dict] = []
    out = tmp_path / "out"
    (out / "run" / "checkpoints").mkdir(parents=True)
    (out / "run" / "checkpoints" / "image_generator_last.pt").write_bytes(b"")  # an earlier benchmark: refused
    with pytest.raises(RunFolderError):
        run_polyp_benchmark(fake_polyp, out, "cpu", CPU, lambda event: seen.append(process_settings()),
                            reference_sets=("K10_seed0",))
    assert seen and seen[0]["cpu_bf16"] is True  # the cpu preset opts in to bf16 while it runs
    assert process_settings() == before and before["cpu_bf16"] is False


def test_segmenter_seed_count_must_be_positive(fake_polyp, tmp_path):
    with pytest.raises(UsageError, match="segmenter seeds 0"):
        run_polyp_benchmark(fake_polyp, tmp_path / "out", "smoke", CPU, segmenter_seeds=0)
    assert not (tmp_path / "out").exists()
    assert main(["bench", "polyp", "--data", str(fake_polyp), "--out", str(tmp_path / "cli"),
                 "--segmenter-seeds", "0"]) == 2


def test_the_benchmark_applies_the_protocols_alignment_settings_under_explicit_overrides():
    from AlignFlowLib.bench.protocol import bench_config

    assert load_protocol()["version"] == 2 and load_protocol()["align_recipe"] == ["align.style_weight=0"]
    assert bench_config("cpu").align.style_weight == 0.0              # v2: the reward on deep features only
    assert bench_config("cpu", ("align.style_weight=4",)).align.style_weight == 4.0  # a v1-style ablation
    assert bench_config("cpu").segmenter.strong_augment is True        # the segmenter recipe still applies


def test_the_products_alignment_is_the_one_the_protocol_measures():
    """`alignflow run`, the demo and Slicer align with the library presets: the protocol's alignment recipe must
    already hold there, or users would run a method other than the benchmarked one."""
    from AlignFlowLib.config import RunConfig, apply_overrides
    from AlignFlowLib.presets import DEFAULT, DEMO

    recipe = load_protocol()["align_recipe"]
    for preset in (RunConfig(), DEFAULT, DEMO):
        assert apply_overrides(preset, recipe) == preset
