"""The training loops' smoothed loss, kept on the training device and read only when it is reported or saved.

Reading a CUDA scalar (`.item()`) makes the host wait for every queued kernel; doing that each step left the GPU idle
while the next batch was drawn and augmented on the host (measured on an H200: a stage-1 step in the real loop took
1.3x its bare forward + backward). A non-finite loss still stops training before any checkpoint holds it: the
average turns non-finite with the first bad step and stays so, and it is read before every save.
"""

from __future__ import annotations

import math

import torch

from ..errors import TrainingDivergedError


class RunningLoss:
    """Exponential moving average (weight 0.1 on the newest step) of a scalar loss tensor."""

    def __init__(self) -> None:
        self._value: torch.Tensor | None = None

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._value = loss.clone() if self._value is None else self._value.mul_(0.9).add_(loss, alpha=0.1)

    def read(self, stage: str, step: int) -> float:
        """The average now; raises TrainingDivergedError if any loss since the start was NaN or infinite."""
        value = float("nan") if self._value is None else self._value.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(f"{stage}: non-finite loss by step {step}; lower the learning rate")
        return value
