"""bench/stage1_dispersion.py's image statistics on known answers, and bench/pair_statistics.py on a small benchmark folder."""

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


def test_pair_statistics_reads_every_pair_set_of_a_benchmark_folder(tmp_path):
    import json
    import subprocess

    from AlignFlowLib.data.folders import write_images, write_pairs
    from AlignFlowLib.segmenter.export import export_segmenter
    from AlignFlowLib.segmenter.model import build_segmenter

    masks = torch.zeros(3, 1, 96, 96)
    masks[:, :, 30:60, 30:60] = 1
    names = ["a", "b", "c"]
    write_pairs(tmp_path / "source_pairs", torch.full((3, 3, 96, 96), 0.0), masks, names)      # brightness 0.5
    stage1 = torch.stack([torch.full((3, 96, 96), value) for value in (-0.5, -0.3, 0.0)])     # 0.25, 0.35, 0.5
    write_pairs(tmp_path / "stage1_pairs", stage1, masks, names,
                {"judge_filter": {"judge_dice_kept_mean": 0.6, "judge_dice_candidates_mean": 0.4}})
    aligned = torch.full((3, 3, 96, 96), -0.5)
    aligned[:, :, 30:60, 30:60] = 0.5                                                          # a visible lesion
    write_pairs(tmp_path / "aligned" / "K1_seed0" / "pairs_generated_masks", aligned, masks, names)
    one_empty = masks.clone()
    one_empty[0] = 0
    write_pairs(tmp_path / "aligned" / "K1_seed0" / "pairs_source_masks", stage1, one_empty, names)  # real masks
    # The run's judge: a segmenter that marks every pixel (zero weights, a large output bias).
    judge = build_segmenter("unet", 3)
    with torch.no_grad():
        for parameter in judge.parameters():
            parameter.zero_()
        list(judge.parameters())[-1].fill_(10.0)
    export_segmenter(judge, tmp_path / "run" / "source_segmenter" / "exported", architecture="unet", in_channels=3,
                     image_size_px=96)
    write_images(tmp_path / "references" / "K1_seed0" / "images", torch.full((1, 3, 96, 96), 0.5), ["r"])
    out = tmp_path / "stats.json"
    subprocess.run([sys.executable, str(BENCH / "pair_statistics.py"), str(tmp_path), "--out", str(out)], check=True,
                   capture_output=True)
    report = json.loads(out.read_text())
    pairs = report["pairs"]
    assert set(pairs) == {"source (real)", "stage1", "aligned K1_seed0", "aligned K1_seed0 (real masks)"}
    assert pairs["aligned K1_seed0 (real masks)"]["brightness_mean"] == pytest.approx(1.1 / 3, abs=0.01)
    assert pairs["stage1"]["brightness_mean"] == pytest.approx(1.1 / 3, abs=0.01)  # 8-bit rounding
    assert pairs["stage1"]["lesion_visibility"] == pytest.approx(0.0, abs=0.01)
    assert pairs["source (real)"]["feature_spread"] == pytest.approx(0.0, abs=1e-3)  # three identical images
    assert pairs["stage1"]["feature_spread"] > 0.1                                   # three different ones
    assert pairs["source (real)"]["feature_shift_from_source"] == 0.0
    assert pairs["aligned K1_seed0"]["feature_shift_from_source"] > 0.1
    assert report["references"]["K1_seed0"]["feature_spread"] == pytest.approx(0.0, abs=1e-3)  # one image
    assert pairs["aligned K1_seed0"]["lesion_visibility"] == pytest.approx(1.0, abs=0.02)  # [-1, 1] scale
    assert report["references"]["K1_seed0"]["brightness_mean"] == pytest.approx(0.75, abs=0.01)
    assert report["references"]["K1_seed0"]["colour_mean"] == pytest.approx([0.75] * 3, abs=0.01)
    assert pairs["stage1"]["colour_mean"] == pytest.approx([1.1 / 3] * 3, abs=0.01)
    assert (pairs["stage1"]["judge_dice_kept"], pairs["stage1"]["judge_dice_candidates"]) == (0.6, 0.4)
    assert "judge_dice_kept" not in pairs["aligned K1_seed0"]  # its manifest-less folder was not filtered
    # Marking every pixel finds each 30 x 30 lesion with Dice 2 * 900 / (9216 + 900), and misses an empty mask.
    assert pairs["stage1"]["judge_dice"] == pytest.approx(1800 / 10116) and pairs["stage1"]["judge_misses"] == 0
    assert pairs["aligned K1_seed0 (real masks)"]["judge_misses"] == pytest.approx(1 / 3)
    distances = report["distance_to_references"]
    assert set(distances) == set(pairs) | {"source, histogram matching", "source, FDA"}
    assert all(set(rows) == {"K1_seed0"} for rows in distances.values())
    source, aligned = distances["source (real)"]["K1_seed0"], distances["aligned K1_seed0"]["K1_seed0"]
    # Flat grey against a flat, lighter reference: no texture at any band-pass level, only the low-pass level
    # differs; the aligned images' lesion edge is texture.
    assert source["patch_swd"][:2] == [0.0, 0.0] and source["patch_swd"][2] > 100
    assert aligned["patch_swd"][0] > 1
    # Both restylings turn a flat image into the flat reference: nothing is left in either distance.
    for restyled in ("source, histogram matching", "source, FDA"):
        assert max(distances[restyled]["K1_seed0"]["patch_swd"]) < 5
        assert distances[restyled]["K1_seed0"]["reward_mmd2"] < 0.1 * source["reward_mmd2"]


def test_colour_mean_keeps_the_channels_apart():
    spec = importlib.util.spec_from_file_location("pair_statistics", BENCH / "pair_statistics.py")
    statistics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(statistics)
    red = torch.stack([torch.full((8, 8), 1.0), torch.full((8, 8), 0.0), torch.full((8, 8), -1.0)])
    assert statistics.colour_mean(torch.stack([red, red.flip(0)])) == pytest.approx([0.5, 0.5, 0.5])
    assert statistics.colour_mean(red[None]) == pytest.approx([1.0, 0.5, 0.0])
    # Over tissue only, black bars (letterbox) and a near-black border leave the colour as it is.
    framed = red.clone()[None].repeat(1, 1, 2, 1)                             # 16 x 8: top half red
    framed[..., 8:12, :], framed[..., 12:, :] = -1.0, -0.9                   # letterbox, then 5 % grey border
    assert statistics.tissue_colour_mean(framed) == pytest.approx([1.0, 0.5, 0.0])
    assert statistics.colour_mean(framed)[0] == pytest.approx(0.5 + 0.25 * 0.05, abs=1e-4)
    assert statistics.dark_share(framed) == pytest.approx(0.5)


def test_table_prints_a_missing_value_as_nan(capsys):
    columns = dispersion.COLUMNS[:1] + [("fid_el0_to_val", "fid_el0", ".1f")]
    dispersion.print_table({"real": {"brightness_mean": 0.2}, "model": {"brightness_mean": 0.25,
                                                                         "fid_el0_to_val": 1068.9}}, columns)
    header, real, model = capsys.readouterr().out.splitlines()
    assert header.split() == ["brightness", "fid_el0"]
    assert real.split() == ["real", "0.200", "nan"] and model.split() == ["model", "0.250", "1068.9"]
