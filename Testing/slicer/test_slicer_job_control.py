"""Cancel, parent-death watchdog and run-folder lock, with real processes (issue 9, defect 4).

Inside Slicer the runner's child is the `PythonSlicer` launcher, which starts the real Python as its own child and
dies at once on SIGTERM. `launcher.py` below behaves that way, so these tests see what a Slicer user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slicer_helpers import REPO

from AlignFlowLib.errors import RunFolderError  # noqa: E402
from AlignFlowLib.job_control import CANCEL_FILE_ENV, PARENT_PID_ENV, RunFolderLock, StopWatcher  # noqa: E402
from AlignFlowLib.runner import ProcessRunner, run_cli  # noqa: E402

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX process groups; Windows uses the cancel file only")

# The worker: stops only through the library's watcher (cancel file / parent gone), then needs a moment to finish
# writing, as the CLI does when it saves its last checkpoint.
WORKER = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
from AlignFlowLib.job_control import StopWatcher
watcher = StopWatcher.from_environment().start()
print(json.dumps({{"event": "log", "message": "worker " + str(os.getpid())}}), flush=True)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    time.sleep(1.0)  # the clean stop takes a while
    with open({marker!r}, "w") as f:
        f.write(watcher.reason or "")
    sys.exit(130)
"""

# Like CTK's launcher: runs the real interpreter as a child, forwards its exit code, no SIGTERM handler of its own.
LAUNCHER = """
import subprocess, sys
sys.exit(subprocess.call([sys.executable, {worker!r}]))
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _wait_for_worker(runner: ProcessRunner, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in runner.poll():
            if str(event.get("message", "")).startswith("worker "):
                return int(event["message"].split()[1])
        time.sleep(0.05)
    raise AssertionError("the worker never started")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


@posix_only
def test_cancel_through_a_launcher_lets_the_worker_stop_cleanly(tmp_path):
    marker = tmp_path / "clean_stop"
    worker = _write(tmp_path, "worker.py", WORKER.format(repo=str(REPO), marker=str(marker)))
    launcher = _write(tmp_path, "launcher.py", LAUNCHER.format(worker=worker))
    runner = ProcessRunner([sys.executable, launcher], raw=True).start()
    worker_pid = _wait_for_worker(runner)

    runner.cancel(grace_s=5.0)
    final = runner.wait(timeout_s=30)
    assert final is not None and final["event"] == "error" and final["exit_code"] == 130
    assert marker.read_text() == "cancel requested", "the worker was killed before its clean stop"
    assert runner.returncode == 130  # forwarded by the launcher: nobody needed a signal
    assert _gone(worker_pid)
    assert not runner.cancel_file.parent.exists(), "the per-job cancel folder is cleaned up"


@posix_only
def test_a_worker_that_ignores_the_cancel_file_is_still_ended(tmp_path):
    stubborn = _write(tmp_path, "stubborn.py", """
        import json, os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({"event": "log", "message": "worker " + str(os.getpid())}), flush=True)
        while True:
            time.sleep(0.1)
    """)
    runner = ProcessRunner([sys.executable, stubborn], raw=True).start()
    worker_pid = _wait_for_worker(runner)
    started = time.monotonic()
    runner.cancel(grace_s=0.5)
    final = runner.wait(timeout_s=30)
    assert final["exit_code"] == 130 and runner.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10 and _gone(worker_pid)


@posix_only
def test_worker_stops_when_the_program_that_started_it_dies(tmp_path):
    """Slicer crashes: the job must not keep the GPU. The 'parent' is a separate process killed with SIGKILL."""
    marker = tmp_path / "clean_stop"
    worker = _write(tmp_path, "worker.py", WORKER.format(repo=str(REPO), marker=str(marker)))
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    env = dict(os.environ, **{PARENT_PID_ENV: str(parent.pid)})
    env.pop(CANCEL_FILE_ENV, None)
    child = subprocess.Popen([sys.executable, worker], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().startswith('{"event": "log", "message": "worker')
    assert child.poll() is None
    parent.kill()
    parent.wait()
    assert child.wait(timeout=20) == 130
    assert "is gone" in marker.read_text() and str(parent.pid) in marker.read_text()


@posix_only
def test_a_job_that_inherited_sigint_ignored_still_stops(tmp_path):
    """A job started in the background by a non-interactive shell (`cmd &`) inherits SIGINT ignored, and
    `_thread.interrupt_main` then does nothing: the watcher must restore the handler, or a cancel never happens."""
    marker = tmp_path / "clean_stop"
    worker = _write(tmp_path, "worker.py", WORKER.format(repo=str(REPO), marker=str(marker)))
    cancel = tmp_path / "cancel"
    env = dict(os.environ, **{CANCEL_FILE_ENV: str(cancel)})
    env.pop(PARENT_PID_ENV, None)
    child = subprocess.Popen([sys.executable, worker], env=env, stdout=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert child.stdout.readline().startswith('{"event": "log", "message": "worker')
    cancel.write_text("")
    assert child.wait(timeout=20) == 130
    assert marker.read_text() == "cancel requested"


def test_stop_watcher_reads_its_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CANCEL_FILE_ENV, raising=False)
    monkeypatch.delenv(PARENT_PID_ENV, raising=False)
    assert StopWatcher.from_environment() is None  # a plain terminal run watches nothing
    monkeypatch.setenv(CANCEL_FILE_ENV, str(tmp_path / "cancel"))
    monkeypatch.setenv(PARENT_PID_ENV, "not-a-pid")
    watcher = StopWatcher.from_environment()
    assert watcher.cancel_file == tmp_path / "cancel" and watcher.parent_pid is None


def test_run_folder_lock_is_exclusive_and_released(tmp_path):
    first = RunFolderLock(tmp_path / "run").acquire()
    holder = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from AlignFlowLib.job_control import RunFolderLock
        from AlignFlowLib.errors import RunFolderError
        try:
            RunFolderLock({str(tmp_path / "run")!r}).acquire()
        except RunFolderError as error:
            print(error); sys.exit(4)
    """)], capture_output=True, text=True, timeout=60)
    assert holder.returncode == 4 and f"pid {os.getpid()}" in holder.stdout
    first.release()
    with RunFolderLock(tmp_path / "run"):
        with pytest.raises(RunFolderError, match="in use by another alignflow job"):
            RunFolderLock(tmp_path / "run").acquire()


def test_second_cli_job_on_a_locked_run_folder_exits_4(tmp_path, phantom_paths):
    """'Resume' pressed while a job still runs: the second writer is refused before it touches anything."""
    run = tmp_path / "run"
    with RunFolderLock(run):
        before = sorted(p.name for p in run.iterdir())
        events: list[dict] = []
        code = run_cli(["train", "--source", str(phantom_paths.source), "--out", str(run), "--device", "cpu",
                        "--preset", "demo"], events.append, timeout_s=180)
    assert code == 4, events
    assert events[-1]["event"] == "error" and "in use by another alignflow job" in events[-1]["message"]
    assert not (run / "checkpoints").exists() and not (run / "config.json").exists()
    assert set(before) <= {p.name for p in run.iterdir()}
    assert json.loads((run / "events.jsonl").read_text().splitlines()[-1])["exit_code"] == 4


@posix_only
def test_cancelled_training_behind_a_launcher_stops_within_seconds_and_resumes(tmp_path, phantom_paths):
    """The Slicer path for real: the runner starts `alignflow train` through a launcher script (as PythonSlicer
    is), Cancel stops it cleanly (exit 130 forwarded, checkpoint intact), and --resume finishes the run."""
    from AlignFlowLib.checkpoint import load_checkpoint
    from AlignFlowLib.config import to_dict
    from conftest import tiny_config

    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\nexit $?\n')
    launcher.chmod(0o755)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"config": to_dict(tiny_config(image_steps=80, mask_steps=10,
                                                                checkpoint_every=10))}))
    run = tmp_path / "run"
    args = ["train", "--source", str(phantom_paths.source), "--out", str(run), "--config", str(config),
            "--device", "cpu"]
    runner = ProcessRunner(args, python=str(launcher)).start()
    checkpoint = run / "checkpoints" / "image_generator_last.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not runner.finished:
        runner.poll()
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 20:
            break
        time.sleep(0.1)
    assert not runner.finished, "training ended before it could be cancelled; make it longer"
    started = time.monotonic()
    runner.cancel(grace_s=30.0)
    final = runner.wait(timeout_s=60)
    assert final["exit_code"] == 130 and runner.returncode == 130, final
    assert time.monotonic() - started < 15
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert 20 <= stopped_at < 80 and not list((run / "checkpoints").glob("*.tmp"))
    assert "cancel requested" in (run / "events.jsonl").read_text().splitlines()[-1]

    events: list[dict] = []
    assert run_cli(args + ["--resume"], events.append, timeout_s=300) == 0, events[-1]
    assert any(str(e.get("message", "")).startswith(f"resumed from step {stopped_at}") for e in events)
    assert load_checkpoint(checkpoint)["step"] == 80


# Windows and macOS: macOS takes the POSIX paths tested above for real; the Windows paths are driven here with
# recording stand-ins for the Win32 calls they make (no Windows machine is available to CI).

def test_windows_tree_kill_uses_taskkill_on_the_whole_tree(monkeypatch):
    from AlignFlowLib import runner as runner_module

    from AlignFlowLib import job_control

    calls = []
    monkeypatch.setattr(job_control, "on_windows", lambda: True)
    monkeypatch.setattr(runner_module.subprocess, "run", lambda command, **kwargs: calls.append(command))
    process = type("P", (), {"pid": 4242, "poll": lambda self: None})()
    runner_module._signal_tree(process, force=False)
    runner_module._signal_tree(process, force=True)
    assert calls == [["taskkill", "/PID", "4242", "/T"], ["taskkill", "/PID", "4242", "/T", "/F"]]
    assert runner_module._group_alive(process)  # on Windows only the leader is known


def test_windows_parent_check_and_run_folder_lock(monkeypatch, tmp_path):
    import ctypes
    import types

    from AlignFlowLib import job_control

    class Kernel32:
        alive = {100}

        def OpenProcess(self, access, inherit, pid):
            assert access == 0x00100000  # SYNCHRONIZE: enough to wait on, nothing more
            return pid if pid in (100, 200) else 0

        def WaitForSingleObject(self, handle, timeout_ms):
            return 0x102 if handle in self.alive else 0  # WAIT_TIMEOUT while running

        def CloseHandle(self, handle):
            return 1

    monkeypatch.setattr(job_control, "on_windows", lambda: True)
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(kernel32=Kernel32()), raising=False)
    assert job_control.pid_alive(100) and not job_control.pid_alive(200) and not job_control.pid_alive(300)

    held: dict[int, bool] = {}

    def locking(fd, mode, size):
        if mode == msvcrt.LK_NBLCK:
            if held.get(size):
                raise OSError("locked")
            held[size] = True
        elif mode == msvcrt.LK_UNLCK:
            held[size] = False

    msvcrt = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0)
    msvcrt.locking = locking
    monkeypatch.setitem(sys.modules, "msvcrt", msvcrt)
    first = job_control.RunFolderLock(tmp_path).acquire()
    with pytest.raises(RunFolderError, match="in use"):
        job_control.RunFolderLock(tmp_path).acquire()
    first.release()
    job_control.RunFolderLock(tmp_path).acquire().release()
