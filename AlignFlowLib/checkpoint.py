"""Checkpoints are data: tensors and plain values only, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import RunFolderError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: a kill leaves the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


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


def write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))
