"""Checkpoints are data: tensors and plain values only, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import RunFolderError


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Save a dict of state dicts, plain config dicts and numbers atomically."""
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data (no code is unpickled), naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError("checkpoint not found", path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise RunFolderError(f"checkpoint does not load ({type(error).__name__}: {str(error).splitlines()[0][:120]})",
                             path) from error
