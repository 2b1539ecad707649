"""Euler and Heun ODE samplers from noise (t=0) to data (t=1), differentiable by one flag.

One sampler serves inference and fine-tuning: with `grad_last_steps=k > 0` the first N − k steps run without a graph
and only the last k keep one (DRaFT-k, Clark et al. 2024), each step optionally under activation checkpointing, so
memory does not grow with N.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from ..errors import choose

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B,C,H,W), t (B,)) -> v (B,C,H,W)


def euler_step(velocity_fn: VelocityFn, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    t_b = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
    return x + dt * velocity_fn(x, t_b).float()


def heun_step(velocity_fn: VelocityFn, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Heun's (explicit trapezoidal) method: second order, two velocity evaluations per step."""
    t_b = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
    v_start = velocity_fn(x, t_b).float()
    x_euler = x + dt * v_start
    v_end = velocity_fn(x_euler, t_b + dt).float()
    return x + 0.5 * dt * (v_start + v_end)


STEPPERS = {"euler": euler_step, "heun": heun_step}


def sample_ode(velocity_fn: VelocityFn, x0: torch.Tensor, method: str = "euler", num_steps: int = 20,
               grad_last_steps: int = 0, checkpoint_activations: bool = False, start_time: float = 0.0) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t=start_time (x0) to t=1 on a uniform grid of `num_steps` steps.

    Args:
        velocity_fn: the (possibly guided) velocity field.
        x0: (B, C, H, W) the state at `start_time`: noise at 0; the sampler state stays in fp32.
        method: euler | heun.
        num_steps: N, the number of steps over [start_time, 1].
        grad_last_steps: k; 0 samples under `torch.no_grad`, k > 0 keeps gradients through the last k steps only.
        checkpoint_activations: recompute each differentiable step's activations in the backward pass.
        start_time: t0 in [0, 1); t0 > 0 continues a path already part-way to the data (translation).

    Returns:
        x1: (B, C, H, W) the sample at t = 1.
    """
    step = choose("sampler", method, STEPPERS)
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if not 0.0 <= start_time < 1.0:
        raise ValueError(f"start_time must be in [0, 1), got {start_time}")
    k = max(0, min(int(grad_last_steps), num_steps))
    dt = (1.0 - start_time) / num_steps
    x = x0.float()
    with torch.no_grad():
        for i in range(num_steps - k):
            x = step(velocity_fn, x, start_time + i * dt, dt)
    for i in range(num_steps - k, num_steps):
        if checkpoint_activations and torch.is_grad_enabled():
            x = activation_checkpoint(step, velocity_fn, x, start_time + i * dt, dt, use_reentrant=False)
        else:
            x = step(velocity_fn, x, start_time + i * dt, dt)
    return x
