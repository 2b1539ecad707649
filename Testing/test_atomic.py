"""Folder replacement that a failure or a kill cannot leave half done (synthetic pairs, Slicer exports)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from AlignFlowLib.atomic import replace_folder


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _writer(files: dict[str, str]):
    def write(folder):
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return write


def _failing_writer(folder):
    (folder / "half.txt").write_text("half")
    raise OSError(28, "No space left on device")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_new_content_replaces_the_old_exactly(tmp_path):
    folder = tmp_path / "synthetic"
    replace_folder(folder, _writer({"a.txt": "1", "sub/b.txt": "2"}))
    replace_folder(folder, _writer({"a.txt": "3"}))
    assert _files(folder) == {"a.txt": "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_a_failed_write_leaves_the_previous_content_and_no_leftovers(tmp_path):
    folder = tmp_path / "synthetic"
    replace_folder(folder, _writer({"a.txt": "1"}))
    with pytest.raises(OSError, match="No space"):
        replace_folder(folder, _failing_writer)
    assert _files(folder) == {"a.txt": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_a_swap_killed_between_its_renames_is_undone_by_the_next_writer(tmp_path):
    """The kill left the folder moved aside and the new one not yet in place; the next call (another process) puts
    the previous content back before it writes, so even its own failure leaves the folder whole."""
    folder, pid = tmp_path / "synthetic", _dead_pid()
    aside = tmp_path / f".synthetic.old-{pid}"
    half = tmp_path / f".synthetic.new-{pid}"
    _writer({"a.txt": "previous"})(aside.parent / aside.name)
    _writer({"a.txt": "new, complete, but never swapped in"})(half)
    with pytest.raises(OSError):
        replace_folder(folder, _failing_writer)
    assert _files(folder) == {"a.txt": "previous"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_a_live_writers_folders_are_left_alone(tmp_path):
    """Another process in the middle of its own swap (its pid is alive) keeps its working folders."""
    folder = tmp_path / "synthetic"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            working = tmp_path / f".synthetic.new-{other.pid}"
            working.mkdir()
            replace_folder(folder, _writer({"a.txt": "1"}))
            assert working.is_dir()
        finally:
            other.kill()
