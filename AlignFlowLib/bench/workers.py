"""The benchmark's independent jobs spread over worker processes, one per GPU, or each with a share of the CPU
cores: segmenter jobs (methods × reference sets × seeds: most of its time) and the alignment of each reference set.

A job depends only on its inputs and the files it names (`train_and_score`, `align_reference_set`), so it runs the
same in the benchmark's process or in a worker. Workers receive the source, test and validation tensors once, when
they start; each segmenter job brings its own synthetic or transformed pairs, and its JSON is written by the
benchmark's process the moment it arrives, so OUT/jobs is the job table a resumed benchmark (`--resume`) reads to
skip finished work.
An alignment job writes only its own set's folder, with `align_summary.json` last as its mark of completion.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import pipeline
from ..atomic import write_json_atomic
from ..config import SegmenterConfig
from ..data.folders import PairSet
from ..device import apply_process_settings, process_settings
from ..errors import CancelledByUser
from ..events import ignore_events
from ..run_folder import RunFolder
from ..segmenter.train import evaluate_segmenter, train_segmenter


def train_and_score(source: PairSet, test: PairSet, source_val: PairSet | None, device: torch.device,
                    method: str, set_name: str, config: SegmenterConfig,
                    extra: tuple[torch.Tensor, torch.Tensor] | None, score_test: bool,
                    on_event=ignore_events) -> dict[str, Any]:
    """Train one segmenter on source (+ extra) pairs and score it: per-image Dice/IoU on the test set, and mDice on
    source validation when there is one."""
    model = train_segmenter(source.images, source.masks, config, device, on_event,
                            synthetic_images=None if extra is None else extra[0],
                            synthetic_masks=None if extra is None else extra[1],
                            stage=f"segmenter:{method}:{set_name}:{config.seed}")
    # The thread count is recorded because CPU results depend on it: the same seed trained with 1 and with 2 threads
    # gives different weights (bit-identical across processes at one count).
    job: dict[str, Any] = {"method": method, "reference_set": set_name, "seed": config.seed,
                           "cpu_threads": torch.get_num_threads()}
    if source_val is not None and len(source_val):
        job["source_val_mdice"] = evaluate_segmenter(model, source_val.images, source_val.masks, device)["mdice"]
    if score_test:
        scores = evaluate_segmenter(model, test.images, test.masks, device)
        job.update(mdice=scores["mdice"], miou=scores["miou"], dice=[round(v, 5) for v in scores["dice"]],
                   iou=[round(v, 5) for v in scores["iou"]])
    return job


def align_reference_set(run_root: Path, references_dir: Path, set_dir: Path, device: torch.device,
                        condition_masks: torch.Tensor, on_event=ignore_events) -> dict[str, Any]:
    """Align the run's stage 1 to one reference set into `set_dir`: its resumable state (removed when done), the
    aligned generator, and `align_summary.json` last. Nothing else is written, so several sets can be aligned at
    once."""
    set_dir = Path(set_dir)
    summary = pipeline.align(RunFolder(Path(run_root)), Path(references_dir), device, resume=True, on_event=on_event,
                             condition_masks=condition_masks, out_dir=set_dir)
    write_json_atomic(set_dir / "align_summary.json", summary)
    (set_dir / "align_state.pt").unlink(missing_ok=True)  # only a cut-off alignment needs it
    return summary


def worker_devices(workers: int, device: torch.device) -> list[str]:
    """One device per worker: the CUDA devices in turn (one job per GPU when workers = GPUs), else the CPU."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        return [f"cuda:{index % count}" for index in range(workers)]
    return [device.type] * workers


_WORKER: dict[str, Any] = {}


def _start_worker(devices, threads: int, settings: dict[str, Any], cancel, source: PairSet, test: PairSet,
                  source_val: PairSet | None) -> None:
    device = torch.device(devices.get())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(threads)
    apply_process_settings(settings)  # the parent's CPU bf16 and compile choices
    _WORKER.update(device=device, source=source, test=test, source_val=source_val, cancel=cancel)
    # Ctrl-C reaches the whole process group: the benchmark's process handles it and cancels the jobs (below), so a
    # worker is not torn mid-step. If the benchmark's process dies outright (SIGKILL, out of memory), its workers
    # go too, so no alignment keeps writing into a folder whose lock is gone (checkpoints are atomic).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _stop_if_cancelled(event: dict[str, Any]) -> None:
    """The progress callback of a worker's job. A cancelled benchmark stops its running jobs at their next progress
    event, where their checkpoints are consistent, before its own process exits and frees the output folder."""
    if _WORKER["cancel"].is_set():
        raise CancelledByUser("benchmark cancelled")


def _run_in_worker(method: str, set_name: str, config: SegmenterConfig,
                   extra: tuple[torch.Tensor, torch.Tensor] | None, score_test: bool) -> dict[str, Any]:
    _stop_if_cancelled({})  # a job already handed to the worker when the benchmark was cancelled
    return train_and_score(_WORKER["source"], _WORKER["test"], _WORKER["source_val"], _WORKER["device"], method,
                           set_name, config, extra, score_test, _stop_if_cancelled)


def _align_in_worker(run_root: Path, references_dir: Path, set_dir: Path,
                     condition_masks: torch.Tensor) -> dict[str, Any]:
    _stop_if_cancelled({})
    return align_reference_set(run_root, references_dir, set_dir, _WORKER["device"], condition_masks,
                               _stop_if_cancelled)


class WorkerPool:
    """`workers` spawned processes that run segmenter and alignment jobs on their own device."""

    def __init__(self, workers: int, device: torch.device, source: PairSet, test: PairSet,
                 source_val: PairSet | None):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
        devices = context.Queue()
        for name in worker_devices(workers, device):
            devices.put(name)
        threads = 1 if device.type == "cuda" else max(1, (os.cpu_count() or 1) // workers)
        self.workers = workers
        self._cancel = context.Event()
        self._executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                             initargs=(devices, threads, process_settings(), self._cancel, source,
                                                       test, source_val))

    def call(self, function, *args: Any) -> Future:
        """Run a picklable module-level `function(*args)` in a worker."""
        return self._executor.submit(function, *args)

    def submit(self, method: str, set_name: str, config: SegmenterConfig,
               extra: tuple[torch.Tensor, torch.Tensor] | None, score_test: bool) -> Future:
        return self.call(_run_in_worker, method, set_name, config, extra, score_test)

    def submit_alignment(self, run_root: Path, references_dir: Path, set_dir: Path,
                         condition_masks: torch.Tensor) -> Future:
        return self.call(_align_in_worker, run_root, references_dir, set_dir, condition_masks)

    def close(self, cancel: bool = False) -> None:
        """Wait for the jobs; with `cancel`, drop the queued ones and stop the running ones at their next progress
        event (their files stay consistent), so no worker writes after the benchmark has let go of its folder."""
        if cancel:
            self._cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=cancel)

    @classmethod
    @contextlib.contextmanager
    def optional(cls, workers: int, device: torch.device, source: PairSet, test: PairSet,
                 source_val: PairSet | None) -> Iterator["WorkerPool | None"]:
        """A pool when `workers` > 1, else None (jobs run in the calling process). On an error or a cancel the
        queued jobs are dropped: finished ones are on disk, and `--resume` skips them."""
        pool = cls(workers, device, source, test, source_val) if workers > 1 else None
        try:
            yield pool
        except BaseException:
            if pool is not None:
                pool.close(cancel=True)
            raise
        if pool is not None:
            pool.close()
