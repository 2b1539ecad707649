"""One event stream for progress: the progress bar, `events.jsonl` and the JSON lines the Slicer module reads.

An event is a plain dict: ``{"event": "progress", "stage": str, "step": int, "total": int, "eta_s": float, ...metrics}``,
``{"event": "log", "message": str}``, and finally ``{"event": "done", ...}`` or ``{"event": "error", "message": str,
"exit_code": int}``. Library functions take one ``on_event`` callable and never print.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

Event = dict[str, Any]
EventCallback = Callable[[Event], None]

log = logging.getLogger("AlignFlowLib")


def ignore_events(event: Event) -> None:
    """The default `on_event`: drop everything."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return _jsonable(value.item())
    return value


def to_json_line(event: Event) -> str:
    return json.dumps({k: _jsonable(v) for k, v in event.items()}, sort_keys=False)


class StageProgress:
    """Emits progress events for one stage and estimates the remaining time from the steps done so far."""

    def __init__(self, on_event: EventCallback, stage: str, total: int, start_step: int = 0):
        self.on_event, self.stage, self.total = on_event, stage, int(total)
        self._start_step, self._start_time = start_step, time.monotonic()

    def update(self, step: int, **metrics: Any) -> None:
        done = step - self._start_step
        elapsed = time.monotonic() - self._start_time
        eta_s = elapsed / done * (self.total - step) if done > 0 else None
        self.on_event({"event": "progress", "stage": self.stage, "step": int(step), "total": self.total,
                       "eta_s": None if eta_s is None else round(eta_s, 1), **metrics})

    def log(self, message: str) -> None:
        log.info("%s: %s", self.stage, message)
        self.on_event({"event": "log", "stage": self.stage, "message": message})


class JsonlWriter:
    """Appends every event to a file (the run folder's `events.jsonl`), flushed per line so a crash loses nothing."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(to_json_line({"time": round(time.time(), 3), **event}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class JsonlPrinter:
    """`--progress jsonl`: one JSON object per line on stdout, for machines (the Slicer module)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(to_json_line(event) + "\n")
        self.stream.flush()


class ProgressBar:
    """The human progress bar on stderr: one redrawn line per stage, log lines printed above it."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream, self.width = stream or sys.stderr, width
        self._last_draw, self._open_line = 0.0, False

    def _end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def __call__(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "progress":
            now, step, total = time.monotonic(), event["step"], max(event["total"], 1)
            if step < total and now - self._last_draw < 0.2:
                return
            self._last_draw = now
            filled = int(self.width * min(step / total, 1.0))
            metrics = "  ".join(f"{k}={v:.4g}" for k, v in event.items()
                                if isinstance(v, float) and k != "eta_s")
            eta = event.get("eta_s")
            eta_text = f" eta {eta:.0f}s" if eta is not None else ""
            line = f"\r{event['stage']:>12} [{'#' * filled}{'.' * (self.width - filled)}] {step}/{total}{eta_text} {metrics}"
            self.stream.write(line[:160].ljust(100))
            self._open_line = True
            if step >= total:
                self._end_line()
        elif kind in ("log", "done", "error"):
            self._end_line()
            message = event.get("message", "")
            if kind == "done":
                message = message or "done"
            prefix = "error: " if kind == "error" else ""
            self.stream.write(f"{prefix}{message}\n")
        self.stream.flush()


class EventFanout:
    """Sends each event to several sinks (the run log plus the terminal)."""

    def __init__(self, *sinks: EventCallback):
        self.sinks = list(sinks)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)
