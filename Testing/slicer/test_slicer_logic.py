"""The module's Qt-free logic on a real MRML scene: pairing, exporting, CLI commands the real parser accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slicer_helpers import require_slicer_core, scene  # noqa: F401

require_slicer_core()

from AlignFlowLib import mrml  # noqa: E402
from AlignFlowLib.cli import build_parser  # noqa: E402
from AlignFlowSlicerLib.logic import AlignFlowLogic, Requirement, missing_requirements  # noqa: E402


def _volume_with_segments(scene, name: str):
    voxels = np.zeros((2, 12, 12), np.int16)
    volume = mrml.volume_from_array(scene, voxels, name, rgb=False)
    segmentation = mrml.segmentation_for(scene, volume, f"{name} segmentation")
    a, b = np.zeros(voxels.shape, bool), np.zeros(voxels.shape, bool)
    a[0, 1:4, 1:4], b[1, 6:9, 6:9] = True, True
    mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "tumour"), a, volume)
    mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "oedema"), b, volume)
    return volume, segmentation, a, b


def test_pairs_each_volume_with_its_own_segmentation(scene):
    first, first_seg, _, _ = _volume_with_segments(scene, "case 1")
    second, second_seg, _, _ = _volume_with_segments(scene, "case 2")
    logic = AlignFlowLogic(scene)
    assert logic.source_pairs_for([second, first]) == [(second, second_seg), (first, first_seg)]
    lonely = mrml.volume_from_array(scene, np.zeros((1, 4, 4), np.int16), "unlabelled", rgb=False)
    with pytest.raises(ValueError, match="'unlabelled' has no segmentation"):
        logic.source_pairs_for([first, lonely])


def test_export_source_merges_segments_or_takes_the_named_one(scene, tmp_path):
    volume, _, tumour, oedema = _volume_with_segments(scene, "case")
    logic = AlignFlowLogic(scene)
    import SimpleITK as sitk

    merged = logic.export_source([volume], tmp_path / "all")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(merged / "masks" / "case.nrrd"))),
                          (tumour | oedema).astype(np.uint8))
    named = logic.export_source([volume], tmp_path / "one", ["oedema"])
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(named / "masks" / "case.nrrd"))),
                          oedema.astype(np.uint8))
    with pytest.raises(ValueError, match="segment 'vessel' not found"):
        logic.export_source([volume], tmp_path / "none", ["vessel"])
    refs = logic.export_references([volume], tmp_path / "refs")
    assert sorted(p.name for p in refs.iterdir()) == ["case.nrrd"]


def test_every_command_is_accepted_by_the_cli_parser(scene):
    logic = AlignFlowLogic(scene, device="cpu")
    parser = build_parser()
    commands = [
        logic.train_args(Path("src"), Path("run"), 64, 100, 50, "demo", resume=True),
        logic.align_args(Path("run"), Path("refs"), 10, "lora", resume=True),
        logic.synthesize_args(Path("run"), 20, 3, "source", Path("out")),
        logic.segmenter_train_args(Path("src"), Path("seg"), Path("syn"), "segresnet", 30),
        logic.segmenter_evaluate_args(Path("seg/exported"), Path("test"), Path("m.json")),
        logic.segmenter_export_args(Path("seg"), Path("exp")),
        logic.run_all_args(Path("src"), Path("refs"), Path("run"), Path("test"), "demo", 32, 5, 5, 2, 5, 8, True),
        logic.train_args(Path("src"), Path("run")),  # preset values (None) leave their flags out
    ]
    for args in commands:
        parsed = parser.parse_args(args + ["--progress", "jsonl"])
        assert parsed.device == "cpu" and parsed.progress == "jsonl"
    assert parser.parse_args(commands[0]).steps == 100 and parser.parse_args(commands[0]).resume
    assert parser.parse_args(commands[2]).seed == 3 and parser.parse_args(commands[2]).mask_source == "source"
    assert "--steps" not in commands[-1]


def test_run_folder_helpers(tmp_path):
    run = tmp_path / "run"
    assert "not a run folder" in AlignFlowLogic.run_summary(run)
    (run / "segmenter" / "exported").mkdir(parents=True)
    (run / "segmenter" / "exported" / "model.json").write_text("{}")
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"segmenter": {"mdice": 0.81234}}))
    summary = AlignFlowLogic.run_summary(run)
    assert "segmenter" in summary and "mdice=0.812" in summary
    for folder in (run, run / "segmenter", run / "segmenter" / "exported"):
        assert AlignFlowLogic.exported_segmenter(folder) == run / "segmenter" / "exported"


def test_start_uses_the_runner_factory(scene):
    started = []
    logic = AlignFlowLogic(scene, runner_factory=lambda args: started.append(args) or "runner")
    assert logic.start(["demo"]) == "runner" and started == [["demo"]]


def test_missing_requirements_finds_absent_modules():
    present, absent = Requirement("json", "json"), Requirement("alignflow_no_such_module", "nothing")
    assert missing_requirements([present, absent]) == [absent]
