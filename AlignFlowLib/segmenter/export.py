"""The exported segmenter (DESIGN.md §3): a folder with `model.safetensors` (weights only) and `model.json`.

`model.json` describes the MONAI network (class and arguments), the preprocessing and the label names; loading
rebuilds the network from that description and fills in the weights, so a model someone sends you is data that
cannot run code (a TorchScript file, the format before, is a program). The same folder serves `alignflow segmenter
evaluate` and `predict`, the stage-2 mask-consistency term (which needs gradients with respect to the input image)
and the 3D Slicer Segment Editor effect.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .. import distributed
from ..atomic import atomic_write, write_json_atomic, writes_files
from ..errors import AlignFlowError, InputDataError
from ..version import __version__
from .model import build_from_description, network_description

FORMAT = "alignflow-segmenter"
FORMAT_VERSION = 2  # 1: TorchScript model.pt (no longer read)
WEIGHTS = "model.safetensors"
REQUIRED_KEYS = ("in_channels", "image_size_px", "network")  # what inference cannot guess


def export_segmenter(model: torch.nn.Module, folder: Path, *, architecture: str, in_channels: int,
                     image_size_px: int, resize_mode: str = "letterbox", labels: Sequence[str] = ("lesion",),
                     training_summary: dict | None = None, metrics: dict | None = None,
                     network: dict | None = None) -> Path:
    """Write folder/model.safetensors and folder/model.json (both atomically); the model is not modified.
    `network` describes a model built with other arguments than `architecture`'s defaults.

    Raises:
        ValueError: `model` is not the described network (its weights do not fit that description).
    """
    folder = Path(folder)
    description = network or network_description(architecture, in_channels)
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    try:  # the description must rebuild exactly this network, or the export could never be loaded
        build_from_description(description).load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"the model is not a {architecture!r} network with {in_channels} input channels: "
                         f"{str(error).splitlines()[0]}") from error
    folder.mkdir(parents=True, exist_ok=True)
    payload = save_safetensors(state, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    atomic_write(folder / WEIGHTS, lambda handle: handle.write(payload))
    # Each file is replaced atomically, but not both at once: the digest ties model.json to its weights, so a kill
    # between the two writes leaves an export that is refused (and remade by a resumed run), never a mismatched one.
    write_json_atomic(folder / "model.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "architecture": architecture, "network": description,
        "weights": WEIGHTS, "weights_sha256": hashlib.sha256(payload).hexdigest(), "labels": list(labels),
        "spatial_dims": 2, "in_channels": in_channels,
        "image_size_px": image_size_px, "resize_mode": resize_mode, "intensity": "uint8-or-percentile",
        "threshold": 0.5, "output": "logits", "library_version": __version__,
        "training_summary": training_summary or {}, "metrics": metrics or {},
    })
    stale = folder / "model.pt"  # an earlier TorchScript export in the same folder would only mislead
    if stale.is_file() and writes_files():
        stale.unlink()
    distributed.barrier()  # under torchrun rank 0 wrote the export; the others may load it next
    return folder


def read_model_json(folder: Path) -> dict[str, Any]:
    """model.json of an export, checked for the current format.

    Raises:
        InputDataError: naming the file — no export here, not JSON, another format, or an old TorchScript export
            (with the command that re-exports it).
    """
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise InputDataError("not an exported segmenter (model.json missing)", folder)
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as error:
        raise InputDataError(f"does not parse as JSON ({error})", meta_path) from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputDataError(f"format is {found!r}, expected {FORMAT!r}", meta_path)
    version = meta.get("format_version", 0)
    if version == 1 or ((folder / "model.pt").is_file() and version != FORMAT_VERSION):
        raise InputDataError("is a TorchScript export (format 1), which AlignFlow no longer loads because such a "
                             "file is a program; re-export it from the folder that trained it: alignflow segmenter "
                             "export --run SEGMENTER_OR_RUN_FOLDER --out NEW_FOLDER", meta_path)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputDataError(f"format version {version!r} is not one this library reads (up to "
                             f"{FORMAT_VERSION}); update AlignFlow", meta_path)
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputDataError(f"lacks {', '.join(missing)}", meta_path)
    return meta


def read_weights(folder: Path, meta: dict[str, Any]) -> bytes:
    """The weights file's bytes, checked against the digest model.json recorded (exports before it had none).

    Raises:
        InputDataError: naming the file — outside the folder, unreadable, or not the weights model.json describes.
    """
    meta_path, weights_path = Path(folder) / "model.json", Path(folder) / str(meta.get("weights", WEIGHTS))
    if weights_path.parent != Path(folder):
        raise InputDataError("names a weights file outside its folder", meta_path)
    try:
        payload = weights_path.read_bytes()
    except OSError as error:
        raise InputDataError(f"weights do not load ({error.strerror or type(error).__name__})", weights_path) from error
    expected = meta.get("weights_sha256")
    if expected is not None and hashlib.sha256(payload).hexdigest() != expected:
        raise InputDataError("is not the weights file model.json describes (its SHA-256 differs: an export cut "
                             "short, or files from two exports); export again", weights_path)
    return payload


def is_current_export(folder: Path) -> bool:
    """Whether `folder` holds a complete export this library loads (so an old or half-written one is remade, not
    trusted)."""
    try:
        read_weights(folder, read_model_json(folder))
    except InputDataError:
        return False
    return True


class ExportedSegmenter:
    """A loaded export: `logits` (differentiable in the input), `predict_probs`, `segment_array` (raw image in)."""

    def __init__(self, module: torch.nn.Module, meta: dict[str, Any], device: torch.device):
        self.module, self.meta, self.device = module, meta, device

    @classmethod
    def load(cls, folder: Path, device: torch.device | str = "cpu") -> "ExportedSegmenter":
        """Rebuild the network from model.json and load its weights. Raises InputDataError naming the file when the
        folder is not a valid export."""
        folder, device = Path(folder), torch.device(device)
        meta = read_model_json(folder)
        meta_path, weights_path = folder / "model.json", folder / str(meta.get("weights", WEIGHTS))
        payload = read_weights(folder, meta)
        try:
            module = build_from_description(meta["network"])
        except (ValueError, AlignFlowError) as error:
            raise InputDataError(f"network description: {error}", meta_path) from error
        try:
            state = load_safetensors(payload)
        except Exception as error:  # missing, truncated or not safetensors (the library raises several types)
            raise InputDataError(f"weights do not load ({type(error).__name__})", weights_path) from error
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise InputDataError(f"weights do not fit the described network ({str(error).splitlines()[0][:160]})",
                                 weights_path) from error
        module.to(device).eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        return cls(module, meta, device)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [−1, 1] → (N, 1, S, S) logits; gradients flow to `images`."""
        return self.module(images.to(self.device).float())

    @torch.no_grad()
    def predict_probs(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """(N, C, S, S) → (N, 1, S, S) foreground probabilities on the CPU, without gradients."""
        out = [torch.sigmoid(self.logits(images[i:i + batch_size])).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.empty(0, 1, *images.shape[-2:])

    def segment_array(self, array: np.ndarray) -> np.ndarray:
        """One raw 2-D image (H, W) or (H, W, C), any size and dtype → (H, W) bool mask at its own size."""
        from ..data.io import prepare_image, undo_letterbox

        working, box = prepare_image(np.asarray(array), self.meta["image_size_px"], self.meta["in_channels"],
                                     self.meta.get("resize_mode", "letterbox"))
        probs = self.predict_probs(torch.from_numpy(working)[None])[0, 0].numpy()
        mask = undo_letterbox((probs > self.meta.get("threshold", 0.5)).astype(np.float32), box)
        return np.asarray(mask, dtype=bool)
