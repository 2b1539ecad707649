"""`alignflow segmenter train | evaluate | export | predict`: the downstream segmenter on its own, outside a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json_atomic
from .checkpoint import load_checkpoint
from .config import SegmenterConfig, from_dict, to_dict
from .data.folders import load_pairs, require_trainable
from .errors import AlignFlowError, CancelledByUser, InputDataError, RunFolderError
from .events import EventCallback, StageProgress


def _train(args: argparse.Namespace, device: torch.device, on_event: EventCallback) -> dict[str, Any]:
    from .cli import segmenter_train_config
    from .segmenter.export import export_segmenter
    from .segmenter.train import train_segmenter

    config = segmenter_train_config(args)
    segmenter = config.segmenter
    real = load_pairs(args.source, config.data)  # bad data fails before the output folder is touched
    synthetic = load_pairs(args.synthetic, config.data) if args.synthetic else None
    require_trainable(real, Path(args.source), synthetic)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", {"data": to_dict(config.data), "segmenter": to_dict(segmenter),
                                            "source": str(args.source),
                                            "synthetic": str(args.synthetic) if args.synthetic else None})
    model = train_segmenter(real.images, real.masks, segmenter, device, on_event,
                            synthetic_images=synthetic.images if synthetic else None,
                            synthetic_masks=synthetic.masks if synthetic else None,
                            checkpoint_path=out / "checkpoints" / "last.pt", resume=args.resume)
    exported = export_segmenter(model, out / "exported", architecture=segmenter.architecture,
                                in_channels=config.data.channels, image_size_px=config.data.image_size_px,
                                resize_mode=config.data.resize_mode,
                                training_summary={"num_source_pairs": len(real),
                                                  "num_synthetic_pairs": len(synthetic) if synthetic else 0,
                                                  "config": to_dict(segmenter)})
    return {"exported": str(exported)}


def _model_folder(folder: Path) -> Path:
    """An exported segmenter folder, SEG/exported (from `segmenter train`) or RUN/segmenter/exported."""
    for candidate in (folder, folder / "exported", folder / "segmenter" / "exported"):
        if (candidate / "model.json").is_file():
            return candidate
    return folder


def _evaluate(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from .pipeline import evaluate_exported

    result = evaluate_exported(_model_folder(Path(args.model)), args.data, device)
    if args.out:
        write_json_atomic(Path(args.out), result)
    return {"mdice": result["mdice"], "miou": result["miou"], "num_images": result["num_images"]}


def _export(args: argparse.Namespace) -> dict[str, Any]:
    from .segmenter.export import export_segmenter
    from .segmenter.train import load_segmenter_checkpoint

    folder = Path(args.run)
    candidates = [folder / "checkpoints" / "last.pt", folder / "checkpoints" / "segmenter_last.pt"]
    checkpoint = next((c for c in candidates if c.is_file()), None)
    if checkpoint is None:
        raise RunFolderError("holds no segmenter checkpoint (checkpoints/last.pt or checkpoints/segmenter_last.pt)",
                             folder)
    state = load_checkpoint(checkpoint)
    model = load_segmenter_checkpoint(checkpoint)
    config_file = folder / "config.json"
    stored = json.loads(config_file.read_text()) if config_file.is_file() else {}
    data = stored.get("data") or stored.get("config", {}).get("data") or {}
    if "image_size_px" not in data:
        raise RunFolderError("config.json does not record the working size", config_file)
    exported = export_segmenter(model, Path(args.out), architecture=state["architecture"],
                                in_channels=state["in_channels"], image_size_px=data["image_size_px"],
                                resize_mode=data.get("resize_mode", "letterbox"),
                                training_summary={"config": from_dict(SegmenterConfig, state["config"]).__dict__})
    return {"exported": str(exported)}


def _predict(args: argparse.Namespace, device: torch.device, on_event: EventCallback) -> dict[str, Any]:
    """Segment one image file slice by slice into a 0/1 label file on the same voxel grid (the Segment Editor effect
    runs this in a separate process and shows its progress)."""
    from .predict import check_label_path, count_slices, read_voxels, segment_volume, slice_axis, write_label
    from .segmenter.export import ExportedSegmenter

    out = check_label_path(Path(args.out))
    image, voxels = read_voxels(Path(args.volume))  # bad input fails here, before the model loads
    model_dir = _model_folder(Path(args.model))
    segmenter = ExportedSegmenter.load(model_dir, device)
    try:
        axis = slice_axis(model_dir)
    except (ValueError, TypeError) as error:
        raise InputDataError(f"slice_axis is not an axis ({error})", model_dir / "model.json") from error
    if axis not in (0, 1, 2):
        raise InputDataError(f"slice_axis {axis} is not 0 (x), 1 (y) or 2 (z)", model_dir / "model.json")
    total = count_slices(voxels.shape, axis)
    progress = StageProgress(on_event, "segment", total)
    try:
        mask = segment_volume(segmenter, voxels, axis, lambda done, _total: progress.update(done))
        write_label(mask, image, out)
    except KeyboardInterrupt:
        raise CancelledByUser("cancelled; no output was written", out) from None
    return {"out": str(out), "num_slices": total, "foreground_voxels": int(mask.sum())}


def dispatch(args: argparse.Namespace, device: torch.device, on_event: EventCallback) -> dict[str, Any]:
    if args.segmenter_command == "train":
        return _train(args, device, on_event)
    if args.segmenter_command == "evaluate":
        return _evaluate(args, device)
    if args.segmenter_command == "export":
        return _export(args)
    if args.segmenter_command == "predict":
        return _predict(args, device, on_event)
    raise AlignFlowError(f"unknown segmenter command {args.segmenter_command!r}")
