"""The whole pipeline through the CLI at tiny size, and the synthesis seed contract."""

from __future__ import annotations

import json

import pytest
import torch

from AlignFlowLib import pipeline
from AlignFlowLib.checkpoint import load_checkpoint
from AlignFlowLib.cli import main
from AlignFlowLib.config import SamplerConfig, to_dict
from AlignFlowLib.models.velocity import build_velocity_unet
from AlignFlowLib.synthesis import generate_images, seeded_noise, select_by_judge

from conftest import tiny_config


def test_pair_k_depends_on_seed_k_not_on_batch_size():
    torch.manual_seed(0)
    config = tiny_config().image_generator
    model = build_velocity_unet(3, 1, config).eval()
    masks = (torch.rand(5, 1, 16, 16) > 0.5).float()
    sampler = SamplerConfig(num_steps=3)
    whole = generate_images(model, masks, [10, 11, 12, 13, 14], sampler, torch.device("cpu"), batch_size=5)
    split = generate_images(model, masks, [10, 11, 12, 13, 14], sampler, torch.device("cpu"), batch_size=2)
    extended = generate_images(model, masks[3:], [13, 14], sampler, torch.device("cpu"), batch_size=4)
    assert torch.allclose(whole, split, atol=1e-5)
    assert torch.allclose(whole[3:], extended, atol=1e-5)
    assert not torch.allclose(whole[0], whole[1])


def test_translation_starts_each_image_on_its_own_path_at_the_start_time():
    config = tiny_config().image_generator
    model = build_velocity_unet(3, 1, config).eval()
    for parameter in model.parameters():  # a zero velocity field: the sampler leaves its start point as it is
        parameter.data.zero_()
    masks = (torch.rand(3, 1, 16, 16) > 0.5).float()
    sources = torch.rand(3, 3, 16, 16) * 2 - 1
    sampler, cpu = SamplerConfig(num_steps=3), torch.device("cpu")
    noise = seeded_noise([4, 5, 6], (3, 16, 16))
    assert torch.allclose(generate_images(model, masks, [4, 5, 6], sampler, cpu), noise.clamp(-1, 1))
    translated = generate_images(model, masks, [4, 5, 6], sampler, cpu, init_images=sources, start_time=0.7)
    assert torch.allclose(translated, (0.3 * noise + 0.7 * sources).clamp(-1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="start image"):
        generate_images(model, masks, [4, 5, 6], sampler, cpu, init_images=sources[:2], start_time=0.7)


def test_the_judge_keeps_the_pairs_whose_mask_it_finds_best_ties_to_the_earlier():
    class ReadsTheImageAsItsMask:  # a judge whose prediction is the image's first channel
        def predict_probs(self, images):
            return images[:, :1]

    masks = torch.zeros(5, 1, 4, 4)
    masks[:, :, :2] = 1  # every mask: the top half
    images = torch.zeros(5, 3, 4, 4)
    images[0, 0, :2] = 1          # Dice 1
    images[1, 0, :1] = 1          # Dice 2/3
    images[2, 0] = 1              # Dice 2/3 (a tie with candidate 1)
    images[4, 0, :2, :2] = 1      # Dice 2/3 as well; candidate 3 finds nothing: Dice 0
    selection = select_by_judge(ReadsTheImageAsItsMask(), images, masks, keep=3)
    assert selection.kept == [0, 1, 2]
    assert torch.allclose(selection.dice, torch.tensor([1.0, 2 / 3, 2 / 3, 0.0, 2 / 3]))
    assert select_by_judge(ReadsTheImageAsItsMask(), images, masks, keep=9).kept == [0, 1, 2, 3, 4]


def test_run_end_to_end_and_synthesize_again(tmp_path, phantom_paths, capsys, monkeypatch):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"config": to_dict(tiny_config())}))
    run_dir = tmp_path / "run"
    code = main(["run", "--source", str(phantom_paths.source), "--references", str(phantom_paths.references),
                 "--test", str(phantom_paths.target_test), "--out", str(run_dir), "--config", str(config),
                 "--device", "cpu", "--progress", "jsonl"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "done"
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert {"image_generator", "mask_generator", "source_segmenter", "align", "synthesize", "segmenter"} <= stages

    # Run folder contents.
    assert json.loads((run_dir / "config.json").read_text())["inputs"]["source"] == str(phantom_paths.source)
    assert (run_dir / "segmenter" / "exported" / "model.json").is_file()
    manifest = json.loads((run_dir / "synthetic" / "manifest.json").read_text())
    assert manifest["seeds"] == list(range(8)) and len(list((run_dir / "synthetic" / "images").glob("*.png"))) == 8
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["target_test"]["source_plus_aligned_synthetic"]["mdice"] <= 1
    for name in ("image_generator_last", "mask_generator_last", "align_last", "aligned_generator"):
        assert load_checkpoint(run_dir / "checkpoints" / f"{name}.pt")["library_version"]
    assert [line for line in (run_dir / "events.jsonl").read_text().splitlines() if '"done"' in line]

    # Synthesis again with the same seed reproduces the same files; a different mask source works too.
    again = tmp_path / "again"
    assert main(["synthesize", "--run", str(run_dir), "--num", "4", "--out", str(again), "--device", "cpu"]) == 0
    first = (run_dir / "synthetic" / "images" / "synth_000002.png").read_bytes()
    assert (again / "images" / "synth_000002.png").read_bytes() == first
    assert main(["synthesize", "--run", str(run_dir), "--num", "3", "--mask-source", "source", "--out",
                 str(tmp_path / "real_masks"), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "real_masks" / "masks").glob("*.png"))) == 3

    # Judge filtering draws 2 x 3 candidates and keeps the 3 its judge prefers (here a stand-in that finds every
    # mask in candidates 1, 3 and 5 and none in the others), each byte for byte the pair unfiltered synthesis makes
    # from its seed; the manifest says what the judge saw.
    assert main(["synthesize", "--run", str(run_dir), "--num", "6", "--out", str(tmp_path / "six"),
                 "--device", "cpu"]) == 0
    assert not json.loads((tmp_path / "six" / "manifest.json").read_text()).get("judge_filter")

    class FindsTheOddCandidates:
        def predict_probs(self, images):
            return torch.arange(len(images)).remainder(2).float().view(-1, 1, 1, 1).expand(-1, 1, *images.shape[-2:])

    monkeypatch.setattr(pipeline, "ensure_source_segmenter", lambda *args: FindsTheOddCandidates())
    assert main(["synthesize", "--run", str(run_dir), "--num", "3", "--judge-keep-fraction", "0.5", "--out",
                 str(tmp_path / "judged"), "--device", "cpu"]) == 0
    judged = json.loads((tmp_path / "judged" / "manifest.json").read_text())
    assert judged["judge_filter"]["candidates"] == 6 and judged["judge_filter"]["kept"] == 3
    assert judged["seeds"] == [1, 3, 5] and judged["names"] == ["synth_000001", "synth_000003", "synth_000005"]
    assert judged["judge_filter"]["judge_dice_kept_min"] > 0  # the even candidates score 0
    assert judged["judge_filter"]["judge_dice_candidates_mean"] < judged["judge_filter"]["judge_dice_kept_mean"]
    for name in judged["names"]:
        for kind in ("images", "masks"):
            assert (tmp_path / "judged" / kind / f"{name}.png").read_bytes() == \
                (tmp_path / "six" / kind / f"{name}.png").read_bytes()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["synthesize", "--run", str(run_dir), "--judge-keep-fraction", "0", "--out", str(tmp_path / "zero"),
                 "--device", "cpu", "--progress", "jsonl"]) == 2
    error = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "synthesis.judge_keep_fraction = 0.0: must be ≥ 0.05" in error["message"] and error["exit_code"] == 2
    assert not (tmp_path / "zero").exists()

    # A full disk half-way through writing new pairs leaves the previous ones exactly as they were; the next
    # synthesis replaces the folder as a whole (pairs of the earlier, larger set do not linger).
    from AlignFlowLib.data import folders

    before = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    real_write_png, calls = folders.write_png, []

    def disk_full_on_third(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        real_write_png(path, array)

    folders.write_png = disk_full_on_third
    try:
        code = main(["synthesize", "--run", str(run_dir), "--num", "2", "--seed", "50", "--out", str(again),
                     "--device", "cpu", "--progress", "jsonl"])
    finally:
        folders.write_png = real_write_png
    assert code == 4 and "no space left" in capsys.readouterr().out.splitlines()[-1]
    assert {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".again")) == []
    assert main(["synthesize", "--run", str(run_dir), "--num", "2", "--seed", "50", "--out", str(again),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in (again / "images").iterdir()) == ["synth_000050.png", "synth_000051.png"]
    # ... and a folder holding anything else is not replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["synthesize", "--run", str(run_dir), "--out", str(tmp_path / "mine"), "--device", "cpu",
                 "--progress", "jsonl"]) == 2
    assert "did not write" in capsys.readouterr().out
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

    # The exported segmenter evaluates from the CLI and writes per-image lists.
    scores = tmp_path / "scores.json"
    assert main(["segmenter", "evaluate", "--model", str(run_dir / "segmenter" / "exported"), "--data",
                 str(phantom_paths.target_test), "--out", str(scores), "--device", "cpu"]) == 0
    result = json.loads(scores.read_text())
    assert len(result["dice"]) == result["num_images"] == 60
