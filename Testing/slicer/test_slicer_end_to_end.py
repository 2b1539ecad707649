"""End to end, headless: scene nodes → folders → `alignflow run` in a separate process (the module's runner) →
generated pairs back into the scene → the exported segmenter fills a segment, as the Segment Editor effect does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_helpers import require_slicer_core, scene  # noqa: F401

require_slicer_core()

from AlignFlowLib import mrml  # noqa: E402
from AlignFlowLib.cli import build_parser  # noqa: E402
from AlignFlowLib.runner import run_cli  # noqa: E402
from AlignFlowSlicerLib.logic import AlignFlowLogic  # noqa: E402


def _cli_has(*command: str) -> bool:
    try:
        build_parser().parse_args([*command, "--help"])
    except SystemExit as exit_:
        return exit_.code == 0
    return False


@pytest.mark.slow
@pytest.mark.skipif(not _cli_has("run"), reason="the CLI has no `alignflow run` yet")
def test_scene_to_run_to_scene(scene, tmp_path):
    from AlignFlowLib.config import replace, to_dict
    from AlignFlowLib.data.phantoms import write_phantom_dataset
    from AlignFlowLib.segmenter.export import ExportedSegmenter
    from conftest import tiny_config

    # Labelled source cases and unlabelled target references, as a radiologist would have them in the scene.
    phantoms = write_phantom_dataset(tmp_path / "phantoms", size_px=32, num_source=16, num_references=4,
                                     num_target_test=4, seed=0)
    volumes = []
    for image in sorted((phantoms.source / "images").iterdir()):
        volume = mrml.read_volume(scene, image)
        mask_node = mrml.read_volume(scene, phantoms.source / "masks" / image.name)
        mask = mrml.array_from_volume(mask_node)
        scene.RemoveNode(mask_node)
        segmentation = mrml.segmentation_for(scene, volume, f"{volume.GetName()} segmentation")
        mrml.write_mask_to_segment(segmentation, mrml.add_segment(segmentation, "lesion"),
                                   (mask.max(axis=-1) if mask.ndim == 4 else mask) > 0, volume)
        volumes.append(volume)
    references = [mrml.read_volume(scene, p) for p in sorted((phantoms.references / "images").iterdir())]

    logic = AlignFlowLogic(scene, device="cpu")
    run_dir = tmp_path / "run"
    pairs = logic.source_pairs_for(volumes)  # each volume with the segmentation drawn on it
    source = mrml.export_pairs(scene, pairs, run_dir / "inputs" / "source")
    refs = mrml.export_references(scene, references, run_dir / "inputs" / "references")
    assert len(list((source / "masks").iterdir())) == 16 and len(list(refs.iterdir())) == 4
    config = tiny_config(image_steps=6, mask_steps=4, align_steps=2, segmenter_steps=6, checkpoint_every=3)
    config = replace(config, data=replace(config.data, image_size_px=32),
                     synthesis=replace(config.synthesis, num_pairs=4, batch_size=4))
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"config": to_dict(config)}))

    events = []
    args = logic.run_all_args(source, refs, run_dir, preset="demo") + ["--config", str(config_file)]
    code = run_cli(args, events.append, cwd=tmp_path, timeout_s=420)  # generous: 2 shared CPU cores
    assert code == 0, events[-10:]
    assert events[-1]["event"] == "done"
    assert any(e["event"] == "progress" and "eta_s" in e and e["total"] > 0 for e in events)

    generated = mrml.load_generated_pairs(scene, logic.synthetic_folder(run_dir), "AlignFlow synthetic",
                                          max_pairs=3)
    hierarchy = scene.GetSubjectHierarchyNode()
    folder_item = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), "AlignFlow synthetic")
    assert len(generated) == 3 and hierarchy.GetNumberOfItemChildren(folder_item) == 6
    assert all(seg.GetSegmentation().GetNumberOfSegments() == 1 for _, seg in generated)

    # The effect's path: RUN/segmenter/exported fills the chosen segment with exactly the model's answer.
    exported = run_dir / "segmenter" / "exported"
    assert (exported / "model.json").is_file() and logic.exported_segmenter(run_dir) == exported
    target = references[0]
    segmentation = mrml.segmentation_for(scene, target, "result")
    segment_id = mrml.add_segment(segmentation, "lesion")
    filled = mrml.apply_segmenter(scene, target, segmentation, segment_id, exported)
    expected = ExportedSegmenter.load(exported).segment_array(mrml.array_from_volume(target)[0])
    result = mrml.mask_array(scene, segmentation, target, [segment_id])[0]
    assert np.array_equal(result, expected) and filled == int(expected.sum())
    print(f"filled {filled} of {expected.size} voxels")
