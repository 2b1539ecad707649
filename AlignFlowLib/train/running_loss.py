"""The training loops' smoothed loss, kept on the training device and read only when it is reported or saved.

Reading a CUDA scalar (`.item()`) makes the host wait for every queued kernel; doing that each step keeps the GPU
idle while the host draws and augments the next batch. A non-finite loss still stops training before any checkpoint
holds it: the average turns non-finite with the first bad step and stays so, it is read before every save, and under
torchrun it is averaged over the ranks first, so a NaN on any rank (whose gradients reach every rank) stops them all.
Every rank must call `read` at the same steps (it is a collective then).
"""

from __future__ import annotations

import math

import torch

from .. import distributed
from ..errors import TrainingDivergedError


class RunningLoss:
    """Exponential moving average (weight 0.1 on the newest step) of a scalar loss tensor."""

    def __init__(self, start: float | None = None) -> None:
        """`start`: the average a resumed run had saved, so its curve continues instead of restarting."""
        self._value: torch.Tensor | None = None if start is None else torch.tensor(float(start))

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        if self._value is not None and self._value.device != loss.device:  # a saved start moves to the device once
            self._value = self._value.to(loss.device)
        self._value = loss.clone() if self._value is None else self._value.mul_(0.9).add_(loss, alpha=0.1)

    def read(self, stage: str, step: int) -> float:
        """The average now (the mean over ranks under torchrun); raises TrainingDivergedError if any loss since the
        start, on any rank, was NaN or infinite."""
        if self._value is None:
            value = float("nan")
        else:
            size = distributed.world().size
            value = (distributed.sum_over_ranks(self._value.clone()) / size).item() if size > 1 else self._value.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(f"{stage}: non-finite loss by step {step}; lower the learning rate")
        return value
