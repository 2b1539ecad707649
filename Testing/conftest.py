"""Shared fixtures: tiny phantom datasets and a configuration that trains in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# One thread per test process, and for the processes a test starts (a benchmark's worker pool sets its own count):
# `make test` runs two test processes on two cores (pytest-xdist), and with more threads than cores OpenMP's waiting
# threads spin against each other (measured: the CLI kill-and-resume test took 114 s instead of 22 s beside another
# test process).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def _import_slicer_core_alone() -> None:
    """slicer-core's `slicer` package imports every module of every folder named `slicer` on sys.path and copies
    their names into itself; with Testing/ on sys.path, Testing/slicer's test helpers (the Slicer stand-in
    included) would become `slicer.*` attributes and hide what the real package lacks. Import it once without."""
    here = str(Path(__file__).resolve().parent)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]
    try:
        import slicer  # noqa: F401
    except ImportError:
        pass  # no slicer-core: the Slicer tests skip
    finally:
        sys.path[:] = saved


_import_slicer_core_alone()


@pytest.fixture(scope="session")
def phantom_paths(tmp_path_factory):
    from AlignFlowLib.data.phantoms import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms"), size_px=32, num_source=120,
                                 num_references=10, num_target_test=60, seed=0)


def tiny_config(image_steps: int = 60, mask_steps: int = 30, align_steps: int = 4, segmenter_steps: int = 30,
                checkpoint_every: int = 10):
    """A RunConfig small enough for CLI and reliability tests (not for quality)."""
    from AlignFlowLib.config import replace
    from AlignFlowLib.presets import DEMO

    return replace(
        DEMO,
        image_generator=replace(DEMO.image_generator, channels=(16, 32), attention_levels=(False, False),
                                norm_num_groups=8, num_steps=image_steps, batch_size=8,
                                checkpoint_every_steps=checkpoint_every),
        mask_generator=replace(DEMO.mask_generator, channels=(8, 16), attention_levels=(False, False),
                               num_head_channels=8,
                               norm_num_groups=8, num_steps=mask_steps, batch_size=8,
                               checkpoint_every_steps=checkpoint_every, max_train_iou=1.01),
        align=replace(DEMO.align, num_steps=align_steps, batch_size=4, eval_every_steps=2, eval_num_images=8,
                      feature_size_px=32, checkpoint_every_steps=2),
        synthesis=replace(DEMO.synthesis, num_pairs=8, batch_size=8),
        segmenter=replace(DEMO.segmenter, num_steps=segmenter_steps, batch_size=8),
    )
