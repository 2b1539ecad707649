"""A run started from the page: the CLI in subprocesses, one after another, polled by the page's timer.

The steps are `alignflow run` (everything, resumable) and then two small syntheses for the preview: the stage-1
and the aligned generator each make the same `preview_pairs` pairs from the same masks and noise seeds, so the
page can show what alignment changed, pair by pair. Nothing here trains or samples in the server process: a crash
or an out-of-memory kill takes the job down, not the page, and cancel is the runner's clean cancel (the run folder
stays resumable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..runner import ProcessRunner

PREVIEW = "preview"
GENERATORS = ("stage1", "aligned")
LOG_LINES = 40


@dataclass(frozen=True)
class RunRequest:
    out: Path
    source: Path | None = None  # None when resuming: the run folder knows its inputs
    references: Path | None = None
    preset: str = "default"
    device: str = "auto"
    config: Path | None = None
    test: Path | None = None
    preview_pairs: int = 8


def preview_folder(run: Path, generator: str) -> Path:
    return Path(run) / PREVIEW / generator


def steps_for(request: RunRequest, resume: bool) -> list[tuple[str, list[str]]]:
    """(label, CLI arguments) for each subprocess, in order. A resumed run gets only its folder and device: it
    continues on the source, references, test folder and configuration it was started with."""
    if resume:
        run = ["run", "--out", str(request.out), "--resume", "--device", request.device]
    else:
        run = ["run", "--source", str(request.source), "--references", str(request.references),
               "--out", str(request.out), "--preset", request.preset, "--device", request.device]
        if request.config is not None:
            run += ["--config", str(request.config)]
        if request.test is not None:
            run += ["--test", str(request.test)]
    steps = [("run", run)]
    for generator in GENERATORS:
        steps.append((f"preview {generator}", [
            "synthesize", "--run", str(request.out), "--generator", generator, "--num", str(request.preview_pairs),
            "--out", str(preview_folder(request.out, generator)), "--device", request.device]))
    return steps


class RunJob:
    """Runs `steps_for(request)` one after another. `status` is a plain dict the page mirrors into its state."""

    def __init__(self, request: RunRequest, resume: bool = False,
                 runner_factory: Callable[[Sequence[str]], Any] | None = None):
        self.request = request
        self.steps = steps_for(request, resume)
        self._runner_factory = runner_factory or (lambda args: ProcessRunner(args).start())
        self._index = -1
        self.runner: Any = None
        self.started_at = time.monotonic()
        self.status: dict[str, Any] = {"phase": "running", "step_label": "", "stage": "", "step": 0, "total": 0,
                                       "eta_s": None, "metrics": {}, "message": "", "log": []}
        self._next()

    @property
    def running(self) -> bool:
        return self.status["phase"] == "running"

    def _next(self) -> None:
        self._index += 1
        label, args = self.steps[self._index]
        self.status.update(step_label=label, stage=label, step=0, total=0, eta_s=None)
        self.runner = self._runner_factory(args)

    def _log(self, text: str) -> None:
        self.status["log"] = (self.status["log"] + [text])[-LOG_LINES:]

    def poll(self) -> dict[str, Any]:
        """Read the current step's events, start the next step when it succeeded; returns `status`."""
        if not self.running:
            return self.status
        for event in self.runner.poll():
            kind = event.get("event")
            if kind == "progress":
                self.status.update(stage=event.get("stage", ""), step=int(event.get("step", 0)),
                                   total=int(event.get("total", 0)), eta_s=event.get("eta_s"))
                metrics = {k: v for k, v in event.items()
                           if k not in ("event", "stage", "step", "total", "eta_s") and isinstance(v, (int, float))}
                if metrics:
                    self.status["metrics"] = metrics
            elif kind == "log" and event.get("message"):
                self._log(str(event["message"]))
        if self.runner.finished:
            if self.runner.cancelled:
                self.status.update(phase="cancelled", message="cancelled; the run folder is consistent: Resume "
                                                              "continues it")
            elif self.runner.returncode != 0:
                self.status.update(phase="failed", message=self.runner.error_message
                                   or f"{self.status['step_label']} failed (exit {self.runner.returncode})")
            elif self._index + 1 < len(self.steps):
                self._next()
            else:
                elapsed = time.monotonic() - self.started_at
                self.status.update(phase="done", message=f"finished in {elapsed:.0f} s")
        return self.status

    def cancel(self) -> None:
        if self.running and self.runner is not None:
            self.runner.cancel()

    def wait(self, timeout_s: float, interval_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job ends or `timeout_s` passes (headless use and tests)."""
        deadline = time.monotonic() + timeout_s
        while self.poll()["phase"] == "running" and time.monotonic() < deadline:
            time.sleep(interval_s)
        return self.status
