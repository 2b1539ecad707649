"""The process runner with real subprocesses: progress parsing, error events, crashes and cancel without orphans."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slicer_helpers import REPO  # noqa: F401  (puts the repository on sys.path)

from AlignFlowLib import runner as runner_module  # noqa: E402
from AlignFlowLib.runner import ProcessRunner, alignflow_command, dispatch, parse_line, run_cli  # noqa: E402


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def run(command: list[str], on_event=None, **options) -> tuple[int, dict]:
    """run_cli, also returning the terminal event (always the last one streamed)."""
    events: list[dict] = []

    def collect(event: dict) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    code = run_cli(command, collect, **options)
    assert events and events[-1]["event"] in ("done", "error")
    return code, events[-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_progress_log_and_done_events(tmp_path):
    command = _script(tmp_path, "ok", """
        import json
        for step in (1, 2):
            print(json.dumps({"event": "progress", "stage": "image", "step": step, "total": 2,
                              "eta_s": 2.0 - step, "loss": 0.5 / step}), flush=True)
        print("plain text from a library")
        print(json.dumps({"event": "done", "message": "done", "run": "RUN"}))
    """)
    events = []
    code, final = run(command, events.append, raw=True, timeout_s=30)
    assert code == 0
    assert final == {"event": "done", "message": "done", "run": "RUN"}
    assert [e["event"] for e in events] == ["progress", "progress", "log", "done"]
    assert events[2]["message"] == "plain text from a library"

    progress, logs = [], []
    for event in events:
        dispatch(event, lambda *args: progress.append(args), logs.append)
    assert progress[1] == ("image", 2, 2, 0.0, {"loss": 0.25})
    assert logs == ["plain text from a library", "done"]


def test_error_event_is_the_terminal_event(tmp_path):
    command = _script(tmp_path, "bad_input", """
        import json, sys
        print(json.dumps({"event": "error", "message": "x.png: no mask for this image", "exit_code": 3}))
        sys.exit(3)
    """)
    events = []
    code, final = run(command, events.append, raw=True, timeout_s=30)
    assert code == 3
    assert final["message"] == "x.png: no mask for this image" and final["exit_code"] == 3
    assert sum(e["event"] == "error" for e in events) == 1


def test_crash_becomes_a_readable_error_with_stderr_tail(tmp_path):
    command = _script(tmp_path, "crash", """
        import json
        print(json.dumps({"event": "progress", "stage": "image", "step": 1, "total": 9, "eta_s": None}), flush=True)
        raise MemoryError("out of memory in the velocity UNet")
    """)
    events = []
    code, final = run(command, events.append, raw=True, timeout_s=30)
    assert code == 1
    assert final["event"] == "error" and final["exit_code"] == 1
    assert "exit code 1" in final["message"] and "out of memory in the velocity UNet" in final["message"]
    assert events[-1] is final and sum(e["event"] == "error" for e in events) == 1


def test_cancel_ends_the_whole_process_tree(tmp_path):
    command = _script(tmp_path, "worker_tree", """
        import json, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(json.dumps({"event": "log", "message": f"child {child.pid}"}), flush=True)
        while True:
            time.sleep(0.1)
    """)
    process = ProcessRunner(command, raw=True).start()
    child_pid = None
    deadline = time.monotonic() + 20
    while child_pid is None and time.monotonic() < deadline:
        for event in process.poll():
            if event.get("message", "").startswith("child "):
                child_pid = int(event["message"].split()[1])
        time.sleep(0.05)
    assert child_pid is not None and _alive(child_pid)
    assert process.running and process.returncode is None

    process.cancel(grace_s=2.0)
    final = process.wait(timeout_s=20)
    assert final is not None and final["event"] == "error" and final["exit_code"] == 130
    assert process.returncode == -signal.SIGTERM
    assert "cancelled" in process.error_message
    deadline = time.monotonic() + 5
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the grandchild outlived cancel"


def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path):
    command = _script(tmp_path, "stubborn", """
        import json, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({"event": "log", "message": "ready"}), flush=True)
        while True:
            time.sleep(0.1)
    """)
    process = ProcessRunner(command, raw=True).start()
    deadline = time.monotonic() + 20
    while not any(e.get("message") == "ready" for e in process.poll()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.running
    started = time.monotonic()
    process.cancel(grace_s=0.5)
    final = process.wait(timeout_s=20)
    assert final["exit_code"] == 130
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_command_line_and_parsing():
    command = alignflow_command(["train", "--source", "S", "--out", "R"], python="py")
    assert command == ["py", "-m", "AlignFlowLib.cli", "train", "--source", "S", "--out", "R", "--progress", "jsonl"]
    assert alignflow_command(["demo", "--progress", "jsonl"], python="py").count("--progress") == 1
    assert parse_line('{"event": "progress", "stage": "s", "step": 1, "total": 2}\n')["stage"] == "s"
    assert parse_line("[1, 2]") == {"event": "log", "message": "[1, 2]"}
    assert parse_line('{"no_event": 1}') == {"event": "log", "message": '{"no_event": 1}'}
    assert runner_module.default_python() == sys.executable  # outside Slicer


def test_child_finds_the_library_without_installation(tmp_path):
    """The child's PYTHONPATH gets the folder holding AlignFlowLib (as in a Slicer extension install tree)."""
    command = _script(tmp_path, "where", """
        import importlib.util, json
        spec = importlib.util.find_spec("AlignFlowLib")
        print(json.dumps({"event": "done", "message": str(spec.origin)}))
    """)
    code, final = run(command, raw=True, cwd=tmp_path, timeout_s=30)
    assert code == 0 and Path(final["message"]).parent == REPO / "AlignFlowLib"


def test_poll_api_reports_returncode_and_error_message(tmp_path):
    """The widget's view: poll until finished, then returncode and error_message (None after success)."""
    ok = ProcessRunner(_script(tmp_path, "quiet", "print('hello')"), raw=True, cwd=tmp_path)
    with pytest.raises(RuntimeError):
        ok.poll()
    ok.start()
    assert ok.running and ok.returncode is None and ok.error_message is None
    final = ok.wait(timeout_s=30)
    assert final == {"event": "done", "message": "done"} and ok.returncode == 0 and ok.error_message is None

    bad = ProcessRunner(_script(tmp_path, "usage", "import sys; sys.stderr.write('bad flag\\n'); sys.exit(2)"),
                        raw=True).start()
    bad.wait(timeout_s=30)
    assert bad.returncode == 2 and "exit code 2" in bad.error_message and "bad flag" in bad.error_message


def test_real_cli_usage_error_through_run_cli(tmp_path):
    """The real `python -m AlignFlowLib.cli`: a missing source folder is exit 3 with a one-line error event."""
    events = []
    code = run_cli(["train", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "run"),
                    "--device", "cpu"], events.append, cwd=tmp_path, timeout_s=120)
    assert code == 3, events
    assert events[-1]["event"] == "error" and "missing" in events[-1]["message"]
