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
from AlignFlowSlicerLib.logic import AlignFlowLogic  # noqa: E402


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
    with pytest.raises(ValueError, match="'case segmentation' .* has no segment named 'vessel'"):
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



def _saved_and_reloaded(scene, segmentation, folder: Path):
    """What Add Data gives: a .seg.nrrd read back with no link to any volume."""
    import slicer

    path = folder / f"{segmentation.GetName()}.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentation)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{segmentation.GetName()} (loaded)")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(path))
    assert reader.ReadData(loaded)
    scene.RemoveNode(segmentation)
    return loaded


def test_a_segmentation_loaded_from_file_is_paired_by_its_voxel_grid(scene, tmp_path):
    """Defect 7: CT + .seg.nrrd loaded with Add Data has no reference link, only the grid it was drawn on."""
    volume, segmentation, tumour, oedema = _volume_with_segments(scene, "case")
    loaded = _saved_and_reloaded(scene, segmentation, tmp_path)
    assert not loaded.GetNodeReferenceID(loaded.GetReferenceImageGeometryReferenceRole())
    other = mrml.volume_from_array(scene, np.zeros((2, 12, 13), np.int16), "other grid", rgb=False)
    logic = AlignFlowLogic(scene)
    assert logic.source_pairs_for([volume]) == [(volume, loaded)]
    with pytest.raises(ValueError, match="'other grid' has no segmentation"):
        logic.source_pairs_for([other])
    import SimpleITK as sitk

    out = logic.export_source([volume], tmp_path / "pairs")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / "case.nrrd"))),
                          (tumour | oedema).astype(np.uint8))


def test_several_candidate_segmentations_are_reported_not_guessed(scene, tmp_path):
    volume, segmentation, _, _ = _volume_with_segments(scene, "case")
    first = _saved_and_reloaded(scene, segmentation, tmp_path)
    second = mrml.segmentation_for(scene, volume, "second draft")
    second.RemoveNodeReferenceIDs(second.GetReferenceImageGeometryReferenceRole())  # as if loaded from a file
    with pytest.raises(ValueError, match=r"'case' has 2 segmentations .*'case segmentation \(loaded\)'.*'second draft'"):
        AlignFlowLogic(scene).source_pairs_for([volume])
    # The study in the subject hierarchy breaks the tie.
    hierarchy = scene.GetSubjectHierarchyNode()
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "study")
    for node in (volume, first):
        mrml.nodes.move_to_folder(scene, node, study)
    assert AlignFlowLogic(scene).source_pairs_for([volume]) == [(volume, first)]
    # An explicit choice always wins.
    assert AlignFlowLogic(scene).source_pairs_for([volume], [second]) == [(volume, second)]


def test_segment_name_is_resolved_in_each_segmentation(scene, tmp_path):
    """Defect 8: segment IDs differ per segmentation; the name is looked up in each, and a miss names the case."""
    import SimpleITK as sitk

    first, _, _, first_oedema = _volume_with_segments(scene, "case 1")
    second, second_seg, _, second_oedema = _volume_with_segments(scene, "case 2")
    logic = AlignFlowLogic(scene)
    out = logic.export_source([first, second], tmp_path / "pairs", ["oedema"])
    for stem, expected in (("case_1", first_oedema), ("case_2", second_oedema)):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / f"{stem}.nrrd")))
        assert np.array_equal(written, expected.astype(np.uint8)), stem
    content = second_seg.GetSegmentation()
    content.GetSegment(content.GetSegmentIdBySegmentName("oedema")).SetName("edema")
    with pytest.raises(ValueError, match="'case 2 segmentation' \\(of volume 'case 2'\\) has no segment named "
                                         "'oedema'; it has 'tumour', 'edema'"):
        logic.export_source([first, second], tmp_path / "pairs", ["oedema"])


def test_reexport_holds_exactly_the_current_selection(scene, tmp_path):
    """Defect 9: deselected cases disappear from RUN/inputs; a failed export leaves the previous one intact."""
    first, _, _, _ = _volume_with_segments(scene, "case 1")
    second, _, _, _ = _volume_with_segments(scene, "case 2")
    logic = AlignFlowLogic(scene)
    folder = tmp_path / "run" / "inputs" / "source"
    logic.export_source([first, second], folder)
    logic.export_source([second], folder)
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["case_2.nrrd"]
    assert sorted(p.name for p in (folder / "masks").iterdir()) == ["case_2.nrrd"]
    lonely = mrml.volume_from_array(scene, np.zeros((1, 5, 5), np.int16), "unlabelled", rgb=False)
    with pytest.raises(ValueError):
        logic.export_source([first, lonely], folder)
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["case_2.nrrd"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["source"], "no half-written folder is left behind"

    refs = tmp_path / "run" / "inputs" / "references"
    volumes = [mrml.volume_from_array(scene, np.zeros((1, 4, 4), np.int16), f"ref {i}", rgb=False)
               for i in range(11)]
    logic.export_references(volumes[:3], refs)
    logic.export_references(volumes[3:5], refs)
    assert sorted(p.name for p in refs.iterdir()) == ["ref_3.nrrd", "ref_4.nrrd"]
    with pytest.raises(ValueError, match="11 reference volumes"):
        logic.export_references(volumes, refs)
