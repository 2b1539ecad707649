"""What the timing scripts in bench/ share: a device sync, timing a library training loop by its own progress
events, and a seeded random pair set. Imported by the scripts beside it (their folder is on `sys.path` when they
run), never by the library."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from AlignFlowLib.data.folders import PairSet  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_loop(run: Callable[[Callable[[dict], None]], Any]) -> dict[str, float]:
    """Run a training loop, given its progress callback. Its progress events (every 10 steps; each reads the loss,
    so the device is in step with the host there) time the first steps (construction, warm-up, compilation) and the
    steady state after them; the final checkpoint falls outside."""
    marks: list[tuple[int, float]] = []

    def on_event(event: dict) -> None:
        if event.get("event") == "progress":
            marks.append((event["step"], time.perf_counter()))

    start = time.perf_counter()
    run(on_event)
    (first_step, first_time), (last_step, last_time) = marks[0], marks[-1]
    return {"to_first_report_s": first_time - start, "first_report_step": first_step,
            "step_ms": 1000 * (last_time - first_time) / (last_step - first_step)}


def random_pairs(count: int, size: int, channels: int = 3) -> PairSet:
    """`count` random image-mask pairs in [-1, 1] and {0, 1}, the same for the same arguments."""
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(count, 1, size, size, generator=g) > 0.7).float()
    images = torch.rand(count, channels, size, size, generator=g) * 2 - 1
    return PairSet(images, masks, [str(i) for i in range(count)])
