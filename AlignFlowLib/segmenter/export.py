"""The exported segmenter (DESIGN.md §3): a folder with TorchScript weights and `model.json`.

The same folder serves `alignflow segmenter evaluate`, the stage-2 mask-consistency term (which needs gradients
with respect to the input image) and the 3D Slicer Segment Editor effect (which needs raw arrays in, masks out).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..checkpoint import atomic_write, write_json_atomic
from ..errors import InputDataError
from ..version import __version__

FORMAT = "alignflow-segmenter"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("in_channels", "image_size_px")  # what inference cannot guess from model.json

log = logging.getLogger(__name__)


def _to_torchscript(model: torch.nn.Module, in_channels: int, image_size_px: int) -> torch.jit.ScriptModule:
    model = copy.deepcopy(model).cpu().eval()
    try:
        return torch.jit.script(model)
    except Exception as error:  # some MONAI blocks are not scriptable; tracing is exact for these static graphs
        log.info("segmenter is not scriptable (%s); exporting a trace at %d px", type(error).__name__, image_size_px)
        example = torch.zeros(1, in_channels, image_size_px, image_size_px)
        with torch.no_grad():
            return torch.jit.trace(model, example, check_trace=False)


def export_segmenter(model: torch.nn.Module, folder: Path, *, architecture: str, in_channels: int,
                     image_size_px: int, resize_mode: str = "letterbox", labels: Sequence[str] = ("lesion",),
                     training_summary: dict | None = None, metrics: dict | None = None) -> Path:
    """Write folder/model.pt (TorchScript, CPU) and folder/model.json; the model passed in is not modified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scripted = _to_torchscript(model, in_channels, image_size_px)
    atomic_write(folder / "model.pt", lambda handle: torch.jit.save(scripted, handle))
    write_json_atomic(folder / "model.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "architecture": architecture, "labels": list(labels),
        "spatial_dims": 2, "in_channels": in_channels, "image_size_px": image_size_px, "resize_mode": resize_mode,
        "intensity": "uint8-or-percentile", "threshold": 0.5, "output": "logits", "library_version": __version__,
        "training_summary": training_summary or {}, "metrics": metrics or {},
    })
    return folder


class ExportedSegmenter:
    """A loaded export: `logits` (differentiable in the input), `predict_probs`, `segment_array` (raw image in)."""

    def __init__(self, module: torch.jit.ScriptModule, meta: dict[str, Any], device: torch.device):
        self.module, self.meta, self.device = module, meta, device

    @classmethod
    def load(cls, folder: Path, device: torch.device | str = "cpu") -> "ExportedSegmenter":
        """Raises InputDataError naming the file when the folder is not a valid export."""
        folder, device = Path(folder), torch.device(device)
        meta_path, model_path = folder / "model.json", folder / "model.pt"
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
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InputDataError(f"format version {version!r} is not one this library reads (up to "
                                 f"{FORMAT_VERSION}); update AlignFlow", meta_path)
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            raise InputDataError(f"lacks {', '.join(missing)}", meta_path)
        try:
            module = torch.jit.load(str(model_path), map_location=device)
        except Exception as error:  # a missing or corrupt TorchScript file
            raise InputDataError(f"TorchScript model does not load ({type(error).__name__})", model_path) from error
        module.eval()
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
