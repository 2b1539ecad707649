"""Run `alignflow … --progress jsonl` in a separate process and turn its output into events (Qt-free).

Why a process: training would freeze Slicer's GUI, and only a process can be cancelled cleanly. Cancel first creates
the job's cancel file (ALIGNFLOW_CANCEL_FILE, see job_control.py): the CLI stops cleanly and the run folder stays
resumable, even when the child is Slicer's `PythonSlicer` launcher, which would die at once on SIGTERM and leave its
worker to be killed mid-write. Only a job that has not stopped after a grace period gets SIGTERM, then SIGKILL, sent
to its whole process group (session), data-loader workers included; and a cancelled job counts as finished only once
that group is empty. The child also gets ALIGNFLOW_PARENT_PID, so it stops by itself if this process dies.

The API is poll-based so a Qt timer can drive it without threads touching the GUI:

    runner = ProcessRunner(["train", "--source", src, "--out", run]).start()
    ...  # every 200 ms: for event in runner.poll(): ...
    runner.cancel()          # or: runner.finished, runner.returncode, runner.error_message

`run_cli(args, on_event) -> exit code` is the blocking equivalent for tests and headless use.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from . import job_control
from .job_control import CANCEL_FILE_ENV, PARENT_PID_ENV

Event = dict[str, Any]
CANCELLED_EXIT_CODE = 130
STDERR_TAIL_LINES = 20


def library_parent() -> Path:
    """The folder holding the `AlignFlowLib` package: put on the child's PYTHONPATH so `-m AlignFlowLib.cli` works
    from a Slicer extension's install tree, where the library is not pip-installed."""
    return Path(__file__).resolve().parent.parent


def default_python() -> str:
    """sys.executable: inside Slicer that is the launcher `PythonSlicer` (Slicer's Python with Slicer's library
    paths). Only when it is the GUI executable instead (unusual builds) is the launcher looked up on PATH."""
    slicer = sys.modules.get("slicer")
    in_slicer = slicer is not None and getattr(slicer, "app", None) is not None
    if in_slicer and not Path(sys.executable).name.lower().startswith("pythonslicer"):
        return shutil.which("PythonSlicer") or sys.executable
    return sys.executable


def alignflow_command(args: Sequence[str], python: str | None = None) -> list[str]:
    """The full command line: `<python> -m AlignFlowLib.cli <args> --progress jsonl` (flag added if missing)."""
    args = [str(a) for a in args]
    if "--progress" not in args:
        args += ["--progress", "jsonl"]
    return [python or default_python(), "-m", "AlignFlowLib.cli", *args]


def parse_line(line: str) -> Event:
    """One stdout line → an event; anything that is not a JSON object with an "event" key becomes a log event."""
    text = line.rstrip("\r\n")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("event"), str):
        return value
    return {"event": "log", "message": text}


def dispatch(event: Event, on_progress: Callable[..., None] | None = None,
             on_log: Callable[[str], None] | None = None) -> None:
    """Route an event to `on_progress(stage, step, total, eta_s, metrics)` or `on_log(message)`."""
    kind = event.get("event")
    if kind == "progress" and on_progress is not None:
        metrics = {k: v for k, v in event.items() if k not in ("event", "stage", "step", "total", "eta_s")}
        on_progress(event.get("stage", ""), int(event.get("step", 0)), int(event.get("total", 0)),
                    event.get("eta_s"), metrics)
    elif kind in ("log", "done", "error") and on_log is not None:
        prefix = "error: " if kind == "error" else ""
        on_log(prefix + str(event.get("message", kind)))


def _pump(stream: IO[str], name: str, sink: queue.Queue) -> None:
    """Reader thread: one (stream name, line) per line, then (name, None) at end of stream."""
    for line in iter(stream.readline, ""):
        sink.put((name, line))
    stream.close()
    sink.put((name, None))


class ProcessRunner:
    """One child process, read without blocking. Every run ends with exactly one `done` or `error` event.

    `args` are the CLI arguments (`["train", "--source", ...]`); with `raw=True` they are the whole command line
    (tests run small fake scripts that way).
    """

    def __init__(self, args: Sequence[str], cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 python: str | None = None, raw: bool = False):
        self.command = [str(a) for a in args] if raw else alignflow_command(args, python)
        self.cwd = None if cwd is None else str(cwd)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.grace_s = 5.0
        self.cancelled = False
        self.finished = False
        self._lines: queue.Queue = queue.Queue()
        self._open_streams = 2
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._terminal_event: Event | None = None
        self._exited_at: float | None = None
        self._cancel_dir: str | None = None
        self.cancel_file: Path | None = None

    def start(self) -> ProcessRunner:
        """Launch the command in a new session (its own process group), so cancel can reach every descendant."""
        if self.process is not None:
            raise RuntimeError("this runner was already started")
        child_env = dict(os.environ if self.env is None else self.env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(library_parent()), child_env.get("PYTHONPATH", "")) if p)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env["PYTHONIOENCODING"] = "utf-8"
        self._cancel_dir = tempfile.mkdtemp(prefix="alignflow-job-")
        self.cancel_file = Path(self._cancel_dir) / "cancel"
        child_env[CANCEL_FILE_ENV] = str(self.cancel_file)
        child_env[PARENT_PID_ENV] = str(os.getpid())
        options: dict[str, Any] = {}
        if job_control.on_windows():
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            options["start_new_session"] = True
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, cwd=self.cwd, env=child_env, text=True,
                                        encoding="utf-8", errors="replace", bufsize=1, **options)
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            threading.Thread(target=_pump, args=(stream, name, self._lines), daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once finished (negative: killed by that signal, as after a cancel), else None."""
        return self.process.returncode if self.finished and self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and not self.finished

    @property
    def result(self) -> Event | None:
        """The final `done` or `error` event, once finished."""
        return self._terminal_event if self.finished else None

    @property
    def error_message(self) -> str | None:
        """What went wrong, readable by a clinician (the CLI's one-line error, or the crash's stderr tail);
        None while running or after success."""
        final = self.result
        return None if final is None or final.get("event") != "error" else str(final.get("message", "failed"))

    def poll(self) -> list[Event]:
        """Events produced since the last call; after the process ended and its output is drained, the last one is
        the terminal event (the child's own `done`/`error`, or one made up here for a crash or cancel)."""
        if self.process is None:
            raise RuntimeError("call start() first")
        events: list[Event] = []
        while True:
            try:
                name, line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._open_streams -= 1
                continue
            if name == "stderr":
                text = line.rstrip("\r\n")
                if text:
                    self._stderr_tail.append(text)
                    events.append({"event": "log", "message": text, "stream": "stderr"})
                continue
            event = parse_line(line)
            if event.get("event") in ("done", "error"):
                self._terminal_event = event
            events.append(event)
        if not self.finished and self.process.poll() is not None:
            # A grandchild that inherited the pipes may keep them open; stop waiting for it after a moment.
            self._exited_at = self._exited_at or time.monotonic()
            waited = time.monotonic() - self._exited_at
            if self._open_streams > 0 and waited < 2.0:
                return events
            if self.cancelled and _group_alive(self.process) and waited < self.grace_s:
                return events  # the worker behind a launcher is still writing its last checkpoint
            self.finished = True
            if self.cancelled:
                _signal_tree(self.process, force=True)  # descendants that outlived the grace period
            shutil.rmtree(self._cancel_dir, ignore_errors=True)
            final = self._finish(self.process.returncode)
            if final is not None:
                events.append(final)
        return events

    def _finish(self, code: int) -> Event | None:
        """Make the run end with one terminal event that matches the exit code."""
        seen = self._terminal_event
        if code == 0 and seen is not None and seen.get("event") == "done":
            return None
        if code != 0 and seen is not None and seen.get("event") == "error":
            return None
        if code == 0 and not self.cancelled:
            event: Event = {"event": "done", "message": "done"}
        elif self.cancelled:
            event = {"event": "error", "message": "cancelled; the run folder is consistent, continue with --resume",
                     "exit_code": CANCELLED_EXIT_CODE}
        else:
            tail = "\n".join(self._stderr_tail) or "(no output on stderr)"
            event = {"event": "error", "exit_code": code,
                     "message": f"alignflow stopped unexpectedly (exit code {code}). Last output:\n{tail}"}
        self._terminal_event = event
        return event

    def cancel(self, grace_s: float = 10.0, wait: bool = False) -> None:
        """Stop the job: the cancel file now (the CLI exits 130 with a consistent run folder), SIGTERM to the process
        group after `grace_s`, SIGKILL after twice that. Returns at once (a watcher thread escalates) unless `wait`."""
        if self.process is None or self.finished or self.cancelled:
            return
        self.cancelled = True
        self.grace_s = grace_s
        self.cancel_file.touch()
        watcher = threading.Thread(target=self._escalate, daemon=True)
        watcher.start()
        if wait:
            watcher.join()

    def _escalate(self) -> None:
        for force in (False, True):
            try:
                self.process.wait(timeout=self.grace_s)
                break
            except subprocess.TimeoutExpired:
                _signal_tree(self.process, force=force)
        self.process.wait()
        deadline = time.monotonic() + self.grace_s
        while _group_alive(self.process) and time.monotonic() < deadline:
            time.sleep(0.05)  # a launcher's worker finishing its clean stop
        _signal_tree(self.process, force=True)

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.05,
             on_event: Callable[[Event], None] | None = None) -> Event | None:
        """Poll until finished (or `timeout_s`), passing each event to `on_event`; returns the terminal event."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if self.finished:
                return self._terminal_event
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(interval_s)


def _signal_tree(process: subprocess.Popen, force: bool) -> None:
    """Signal the child's whole process group (POSIX) or tree (Windows, taskkill /T)."""
    if job_control.on_windows():
        command = ["taskkill", "/PID", str(process.pid), "/T"] + (["/F"] if force else [])
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the child's group is left (POSIX); on Windows only the leader is known."""
    if job_control.on_windows():
        return process.poll() is None
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_cli(args: Sequence[str], on_event: Callable[[Event], None] | None = None, cwd: str | Path | None = None,
            env: dict[str, str] | None = None, timeout_s: float | None = None, python: str | None = None,
            raw: bool = False) -> int:
    """Blocking: run `alignflow <args> --progress jsonl`, stream every event (the terminal one last) to `on_event`;
    returns the exit code. On timeout the process tree is cancelled (exit 130 or a signal)."""
    runner = ProcessRunner(args, cwd=cwd, env=env, python=python, raw=raw).start()
    if runner.wait(timeout_s, on_event=on_event) is None:
        runner.cancel(wait=True)
        runner.wait(on_event=on_event)
    return runner.process.returncode
