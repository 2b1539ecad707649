"""Writes that a kill, a full disk or an exception cannot leave half done: a file is replaced by a rename, a folder by
two. Torch-free, so the Slicer side can use it before the library's heavy dependencies are installed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def writes_files() -> bool:
    """False on the ranks other than 0 of a `torchrun` job (RANK is torchrun's variable): one rank writes the run
    folder, the others compute the same values and meet it at barriers (`distributed.py`)."""
    return os.environ.get("RANK", "0") == "0" or os.environ.get("WORLD_SIZE", "1") == "1"


def atomic_write(path: Path, write) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: a kill leaves the old file or the new, never half.
    Does nothing on a rank other than 0."""
    if not writes_files():
        return
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


def write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def replace_folder(folder: Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh sibling folder with `write(new_folder)`, then swap it in for `folder` by renames: the folder holds
    exactly the new content (files the old one had and the new one lacks disappear), and a failure or a kill while
    writing leaves the previous content untouched. A swap cut between its two renames is finished or undone by the
    next call, whichever process makes it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_swap(folder)
    fresh = folder.parent / f".{folder.name}.new-{os.getpid()}"
    stale = folder.parent / f".{folder.name}.old-{os.getpid()}"
    for leftover in (fresh, stale):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        fresh.mkdir()
        write(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(stale)
    fresh.rename(folder)
    shutil.rmtree(stale, ignore_errors=True)
    return folder


def _recover_interrupted_swap(folder: Path) -> None:
    """A kill between the two renames of `replace_folder` leaves `folder` missing and its previous content in a
    `.name.old-PID` sibling: put that back. Half-written `.name.new-PID` folders of dead writers are removed."""
    siblings = sorted(folder.parent.glob(f".{folder.name}.old-*")) + sorted(folder.parent.glob(f".{folder.name}.new-*"))
    for sibling in siblings:
        if _pid_alive(sibling.name.rsplit("-", 1)[-1]):
            continue
        if ".old-" in sibling.name and not folder.exists():
            sibling.rename(folder)
        else:
            shutil.rmtree(sibling, ignore_errors=True)


def _pid_alive(text: str) -> bool:
    try:
        pid = int(text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # this process is not inside a swap of this folder now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
