"""Downstream segmenter: metrics by hand, every architecture, training (real, synthetic mix, resume) and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from AlignFlowLib.config import SegmenterConfig
from AlignFlowLib.errors import AlignFlowError, InputDataError
from AlignFlowLib.segmenter import (SEGMENTER_ARCHITECTURES, ExportedSegmenter, build_segmenter, dice_iou,
                                    evaluate_segmenter, export_segmenter, load_segmenter_checkpoint,
                                    predict_probs, summarize, train_segmenter)
from AlignFlowLib.segmenter.train import augment_pairs, batch_composition

CPU = torch.device("cpu")
SIZE = 32


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright squares on dark noise: images (n, 1, S, S) in [-1, 1], masks (n, 1, S, S) in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, SIZE, SIZE)
    for k in range(n):
        side = int(torch.randint(8, 15, (1,), generator=g))
        y, x = (int(v) for v in torch.randint(0, SIZE - side, (2,), generator=g))
        masks[k, 0, y:y + side, x:x + side] = 1
    images = (-0.5 + masks + 0.25 * torch.randn(n, 1, SIZE, SIZE, generator=g)).clamp(-1, 1)
    return images, masks


def quick_config(**changes) -> SegmenterConfig:
    base = dict(architecture="unet", num_steps=60, batch_size=8, learning_rate=3e-3, augment=True, seed=0)
    return SegmenterConfig(**{**base, **changes})


# Metrics.

def test_dice_iou_by_hand():
    pred = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    truth = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    truth[1, 0, 0, :2] = True                          # image 1: nothing predicted, 2 px to find
    pred[2, 0, 0, :4] = True                           # image 2: 4 px predicted ...
    truth[2, 0, 0, 2:4] = True
    truth[2, 0, 1, :4] = True                          # ... 6 px true, 2 shared
    dice, iou = dice_iou(pred, truth.long())           # {0, 1} integers work like bools
    assert dice.dtype == torch.float64 and dice.shape == (3,)
    assert dice.tolist() == pytest.approx([1.0, 0.0, 0.4])   # 2*2/(4+6)
    assert iou.tolist() == pytest.approx([1.0, 0.0, 0.25])   # 2/(4+6-2)
    dice, iou = dice_iou(truth, pred)                   # empty truth, something predicted → 0
    assert dice[1] == 0.0 and iou[1] == 0.0


def test_summarize_means():
    result = summarize(torch.tensor([1.0, 0.0, 0.4], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.25]))
    assert result["mdice"] == pytest.approx(1.4 / 3) and result["miou"] == pytest.approx(1.25 / 3)
    assert result["dice"] == pytest.approx([1.0, 0.0, 0.4]) and result["num_images"] == 3
    json.dumps(result)


# Architectures.

@pytest.mark.parametrize("architecture", sorted(SEGMENTER_ARCHITECTURES))
def test_architecture_builds_and_runs(architecture):
    model = build_segmenter(architecture, in_channels=3).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, SIZE, SIZE) * 2 - 1)
    assert out.shape == (2, 1, SIZE, SIZE) and torch.isfinite(out).all()


def test_unknown_architecture_lists_choices():
    with pytest.raises(AlignFlowError, match="basicunet.*segresnet.*unet"):
        build_segmenter("resnet9000", 1)


# Training.

def test_training_beats_untrained():
    images, masks = squares(48, seed=1)
    test_images, test_masks = squares(16, seed=2)
    torch.manual_seed(0)
    untrained = build_segmenter("unet", 1)
    before = evaluate_segmenter(untrained, test_images, test_masks, CPU)["mdice"]
    events = []
    model = train_segmenter(images, masks, quick_config(), CPU, on_event=events.append)
    assert not model.training
    after = evaluate_segmenter(model, test_images, test_masks, CPU)
    assert after["mdice"] > max(before + 0.2, 0.5), (before, after["mdice"])
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in progress] == [10, 20, 30, 40, 50, 60]
    assert all(np.isfinite(e["loss"]) and e["total"] == 60 and e["stage"] == "segmenter" for e in progress)


def test_batch_composition():
    assert batch_composition(16, 0.5, True) == (8, 8)
    assert batch_composition(10, 0.3, True) == (7, 3)
    assert batch_composition(8, 1.5, True) == (0, 8)       # clamped to the batch
    assert batch_composition(16, 0.5, False) == (16, 0)
    assert batch_composition(8, 1.0, True) == (0, 8)


def test_synthetic_pairs_are_what_it_learns_from():
    # Same kind of images in both pools, so only the labels differ: real masks all empty, synthetic ones right.
    real_images, real_masks = squares(32, seed=3)
    real_masks = torch.zeros_like(real_masks)
    synthetic_images, synthetic_masks = squares(48, seed=4)
    test_images, test_masks = squares(16, seed=5)
    kwargs = dict(synthetic_images=synthetic_images, synthetic_masks=synthetic_masks)
    only_synthetic = train_segmenter(real_images, real_masks, quick_config(synthetic_ratio=1.0), CPU, **kwargs)
    only_real = train_segmenter(real_images, real_masks, quick_config(synthetic_ratio=0.0), CPU, **kwargs)
    learned = evaluate_segmenter(only_synthetic, test_images, test_masks, CPU)["mdice"]
    ignored = evaluate_segmenter(only_real, test_images, test_masks, CPU)["mdice"]
    assert learned > 0.5 and ignored < 0.2, (learned, ignored)


def test_mismatched_pairs_are_input_errors():
    images, masks = squares(4, seed=0)
    with pytest.raises(InputDataError, match="do not match"):
        train_segmenter(images, masks[:3], quick_config(num_steps=1), CPU)
    with pytest.raises(InputDataError, match="synthetic images .* do not match real images"):
        train_segmenter(images, masks, quick_config(num_steps=1), CPU,
                        synthetic_images=images.repeat(1, 3, 1, 1), synthetic_masks=masks)


def test_augmentation_moves_image_and_mask_together_per_sample():
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[0, 0, 2:6, 3:12] = 1                            # an L-free, off-centre bar: every dihedral turn differs
    masks = mask.repeat(32, 1, 1, 1)
    images = masks * 2 - 1                               # foreground +1, background -1
    generator = torch.Generator().manual_seed(0)
    aug_images, aug_masks = augment_pairs(images, masks, generator)
    assert aug_images.shape == images.shape and aug_masks.shape == masks.shape
    assert torch.equal(aug_images > 0, aug_masks > 0.5)  # jitter is mild: ±1 stays on its side of 0
    assert torch.equal(aug_masks.sum((1, 2, 3)), masks.sum((1, 2, 3)))
    distinct = {tuple(m.flatten().nonzero().flatten().tolist()) for m in aug_masks}
    assert len(distinct) >= 5, "each sample should draw its own flip and rotation"
    assert aug_images[aug_masks > 0.5].std() > 0        # per-sample brightness/contrast/gamma


class _Kill(Exception):
    pass


def test_resume_continues_from_stored_step(tmp_path):
    images, masks = squares(24, seed=6)
    config = quick_config(num_steps=70, batch_size=4, architecture="basicunet")
    path = tmp_path / "last.pt"

    def kill_at_60(event):
        if event["event"] == "progress" and event["step"] == 60:
            raise _Kill

    with pytest.raises(_Kill):
        train_segmenter(images, masks, config, CPU, on_event=kill_at_60, checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 50 and state["architecture"] == "basicunet" and state["in_channels"] == 1
    assert state["config"]["num_steps"] == 70

    events = []
    resumed = train_segmenter(images, masks, config, CPU, on_event=events.append, checkpoint_path=path, resume=True)
    steps = [e["step"] for e in events if e["event"] == "progress"]
    assert steps == [60, 70]
    assert any("resumed from step 50" in e.get("message", "") for e in events)
    assert torch.load(path, weights_only=True)["step"] == 70

    # Same data, same seed, RNG state restored: the resumed run ends where an uninterrupted one does, and reports
    # the same smoothed losses (its average continues from the checkpoint instead of restarting).
    straight_events = []
    straight = train_segmenter(images, masks, config, CPU, on_event=straight_events.append)
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    losses = [{e["step"]: e["loss"] for e in run if e["event"] == "progress"} for run in (events, straight_events)]
    assert losses[0] == pytest.approx({step: losses[1][step] for step in (60, 70)}, rel=1e-4)

    # A finished run resumes to an immediate return, and the checkpoint rebuilds the same model.
    events.clear()
    again = train_segmenter(images, masks, config, CPU, on_event=events.append, checkpoint_path=path, resume=True)
    assert not [e for e in events if e["event"] == "progress"]
    reloaded = load_segmenter_checkpoint(path)
    assert torch.allclose(predict_probs(again, images, CPU), predict_probs(reloaded, images, CPU))


# Export.

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_segmenter("unet", 1)
    model.train()
    folder = export_segmenter(model, tmp_path_factory.mktemp("export") / "seg", architecture="unet", in_channels=1,
                              image_size_px=SIZE, training_summary={"steps": 0}, metrics={"mdice": 0.5})
    return model, folder


def test_export_round_trip(exported):
    model, folder = exported
    assert model.training, "export must not switch the caller's model to eval mode"
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == "alignflow-segmenter" and meta["format_version"] == 2
    assert meta["network"]["class"] == "monai.networks.nets.UNet" and meta["network"]["args"]["in_channels"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    assert meta["in_channels"] == 1 and meta["image_size_px"] == SIZE and meta["labels"] == ["lesion"]
    assert meta["metrics"] == {"mdice": 0.5} and meta["output"] == "logits" and meta["threshold"] == 0.5
    loaded = ExportedSegmenter.load(folder)
    assert loaded.meta == meta and loaded.device == torch.device("cpu")
    assert not any(p.requires_grad for p in loaded.module.parameters())
    images, _ = squares(5, seed=7)
    expected = predict_probs(model, images, CPU, batch_size=2)
    model.train()
    got = loaded.predict_probs(images, batch_size=2)
    assert got.shape == (5, 1, SIZE, SIZE) and not got.requires_grad
    assert torch.allclose(got, expected, atol=1e-5)


def test_exported_logits_are_differentiable(exported):
    loaded = ExportedSegmenter.load(exported[1])
    images = squares(2, seed=8)[0].requires_grad_(True)
    loaded.logits(images).sigmoid().mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_bad_export_folders_name_the_file(tmp_path, exported):
    with pytest.raises(InputDataError, match="model.json"):
        ExportedSegmenter.load(tmp_path / "nothing")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputDataError, match=r"model\.json.*something-else"):
        ExportedSegmenter.load(wrong)
    (wrong / "model.json").write_text("[1, 2")
    with pytest.raises(InputDataError, match="model.json"):
        ExportedSegmenter.load(wrong)
    (wrong / "model.json").write_text(json.dumps({"format": "alignflow-segmenter", "format_version": 2}))
    with pytest.raises(InputDataError, match=r"model\.json.*lacks in_channels, image_size_px, network"):
        ExportedSegmenter.load(wrong)
    (wrong / "model.json").write_text(json.dumps({"format": "alignflow-segmenter", "format_version": 9}))
    with pytest.raises(InputDataError, match=r"model\.json.*version 9"):
        ExportedSegmenter.load(wrong)
    broken = tmp_path / "broken"
    broken.mkdir()
    meta = json.loads((exported[1] / "model.json").read_text())
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputDataError, match="model.safetensors"):
        ExportedSegmenter.load(broken)                      # weights missing
    (broken / "model.safetensors").write_bytes((exported[1] / "model.safetensors").read_bytes()[:200])
    with pytest.raises(InputDataError, match="model.safetensors.*SHA-256 differs"):
        ExportedSegmenter.load(broken)                      # truncated
    (broken / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "weights_sha256"}))
    with pytest.raises(InputDataError, match="model.safetensors.*do not load"):
        ExportedSegmenter.load(broken)                      # truncated, in an export without a digest
    (broken / "model.safetensors").write_bytes((exported[1] / "model.safetensors").read_bytes())
    for key, value, message in (("class", "builtins.eval", "does not match"),
                                ("architecture", "os.system", "unknown segmenter architecture"),
                                ("args", {"channels": {"__class__": "x"}}, "not plain data")):
        (broken / "model.json").write_text(json.dumps({**meta, "network": {**meta["network"], key: value}}))
        with pytest.raises(InputDataError, match=f"model.json.*{message}"):
            ExportedSegmenter.load(broken)                  # only listed MONAI classes with plain arguments
    (broken / "model.json").write_text(json.dumps({**meta, "network": {**meta["network"], "args": {
        **meta["network"]["args"], "channels": [8, 16, 32, 64]}}}))
    with pytest.raises(InputDataError, match="model.safetensors.*do not fit"):
        ExportedSegmenter.load(broken)


def test_old_torchscript_export_is_refused_with_the_re_export_command(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.pt").write_bytes(b"PK\x03\x04 a TorchScript archive")
    (old / "model.json").write_text(json.dumps({"format": "alignflow-segmenter", "format_version": 1,
                                                "in_channels": 1, "image_size_px": 32}))
    with pytest.raises(InputDataError, match=r"TorchScript export .* alignflow segmenter export --run") as caught:
        ExportedSegmenter.load(old)
    assert "\n" not in str(caught.value)


def test_an_export_cut_between_its_two_files_is_refused_not_mixed(tmp_path, monkeypatch):
    """New weights beside the previous export's model.json (a kill between the two atomic writes) must not load as
    a model: the digest in model.json catches it, and the pipeline treats the folder as needing a new export."""
    from AlignFlowLib.segmenter import export as export_module

    folder = tmp_path / "seg"
    export_segmenter(build_segmenter("unet", 1), folder, architecture="unet", in_channels=1, image_size_px=SIZE)
    assert export_module.is_current_export(folder)
    torch.manual_seed(1)
    other = build_segmenter("unet", 1)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as far as the folder is concerned, the same as SIGKILL here

    monkeypatch.setattr(export_module, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        export_segmenter(other, folder, architecture="unet", in_channels=1, image_size_px=SIZE)
    monkeypatch.undo()
    with pytest.raises(InputDataError, match=r"model.safetensors: is not the weights file model.json describes"):
        ExportedSegmenter.load(folder)
    assert not export_module.is_current_export(folder)
    export_segmenter(other, folder, architecture="unet", in_channels=1, image_size_px=SIZE)  # exporting again heals
    loaded = ExportedSegmenter.load(folder).module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in other.state_dict().items())


def test_export_refuses_a_model_its_description_cannot_rebuild(tmp_path):
    with pytest.raises(ValueError, match="not a 'unet' network with 3 input channels"):
        export_segmenter(build_segmenter("unet", 1), tmp_path / "x", architecture="unet", in_channels=3,
                         image_size_px=SIZE)
    assert not (tmp_path / "x").exists()


def test_segment_array_returns_mask_at_original_size(exported):
    io = pytest.importorskip("AlignFlowLib.data.io")
    if not (hasattr(io, "prepare_image") and hasattr(io, "undo_letterbox")):
        pytest.skip("AlignFlowLib.data.io has no prepare_image/undo_letterbox yet")
    loaded = ExportedSegmenter.load(exported[1])
    for array in (np.random.default_rng(0).integers(0, 255, (40, 56), dtype=np.uint8),
                  np.random.default_rng(1).integers(0, 255, (30, 20, 3), dtype=np.uint8)):
        mask = loaded.segment_array(array)
        assert mask.dtype == bool and mask.shape == array.shape[:2]


def test_segment_array_finds_a_bright_rectangle_at_its_own_size(tmp_path):
    io = pytest.importorskip("AlignFlowLib.data.io")
    if not (hasattr(io, "prepare_image") and hasattr(io, "undo_letterbox")):
        pytest.skip("AlignFlowLib.data.io has no prepare_image/undo_letterbox yet")
    from known_answer import export_threshold_segmenter  # a real SegResNet whose weights threshold channel 0

    folder = export_threshold_segmenter(tmp_path / "bright", in_channels=3, image_size_px=SIZE)
    loaded = ExportedSegmenter.load(folder)
    array = np.zeros((48, 80), np.uint8)                 # wide, so letterboxed with padding above and below
    array[10:30, 40:70] = 255
    mask = loaded.segment_array(array)
    truth = torch.from_numpy(array > 128)[None, None]
    dice, _ = dice_iou(torch.from_numpy(mask)[None, None], truth)
    assert mask.shape == (48, 80) and dice.item() > 0.9, dice.item()
    assert not mask[:8].any() and not mask[:, :36].any()    # nothing found away from the rectangle


def test_non_finite_loss_raises_diverged():
    from AlignFlowLib.errors import TrainingDivergedError

    images, masks = squares(4, seed=9)
    images[:, 0, 0, 0] = float("nan")                 # in every image, whatever the batch draws
    with pytest.raises(TrainingDivergedError, match="non-finite loss"):
        train_segmenter(images, masks, quick_config(num_steps=3, batch_size=4, augment=False), CPU)
