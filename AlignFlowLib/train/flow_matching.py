"""The flow-matching training loop shared by the image generator (stage 1) and the mask generator.

Both are the same algorithm on different data — the image generator learns v(x_t, t, mask) on source pairs, the mask
generator v(m_t, t) on source masks — so they share one loop; each stage file only says what a batch is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import torch

from .. import distributed
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import to_dict
from ..device import autocast, compiled, gaussian_noise, seeded_generator, to_device
from ..events import EventCallback, StageProgress, ignore_events
from ..flow.ema import make_ema, update_ema
from ..flow.path import flow_matching_loss, interpolate, sample_time
from ..models.velocity import VelocityUNet, build_velocity_unet
from .running_loss import RunningLoss
from ..version import __version__

# (generator) -> (x1 data batch (B, C, H, W), condition mask (B, 1, H, W) or None), on the training device.
BatchFn = Callable[[torch.Generator], Tuple[torch.Tensor, Optional[torch.Tensor]]]  # evaluated at import: 3.9 syntax
# (condition mask (B, 1, H, W)) -> per-pixel weight of the flow-matching error (B, 1, H, W)
LossWeightFn = Callable[[torch.Tensor], torch.Tensor]


def flow_checkpoint(kind: str, model: torch.nn.Module, ema: torch.nn.Module, optimizer, step: int, config: Any,
                    meta: dict[str, Any], generator: torch.Generator, history: dict[str, list]) -> dict[str, Any]:
    """A checkpoint of plain data: weights, optimiser state, RNG state, config dict, metadata, loss history."""
    return {"kind": kind, "library_version": __version__, "step": step, "config": to_dict(config), "meta": meta,
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": generator.get_state(), "history": history, "distributed": distributed.world().describe()}


def rebuild_flow_model(payload: dict[str, Any], config_cls: type, weights: str = "ema") -> VelocityUNet:
    """Rebuild a velocity UNet from a checkpoint's stored config and metadata, loading its `ema` or `model` weights."""
    from ..config import from_dict

    config = from_dict(config_cls, payload["config"])
    model = build_velocity_unet(payload["meta"]["data_channels"], payload["meta"]["condition_channels"], config)
    model.load_state_dict(payload[weights])
    return model.eval()


def train_flow_model(kind: str, batch_fn: BatchFn, config: Any, meta: dict[str, Any], device: torch.device,
                     checkpoint_path: Path, resume: bool = False, on_event: EventCallback = ignore_events,
                     stage: str | None = None, loss_weight: LossWeightFn | None = None,
                     compile_loop: bool = True) -> VelocityUNet:
    """Train a velocity UNet by conditional flow matching; returns the EMA model (eval mode).

    `config` is an `ImageGeneratorConfig` or `MaskGeneratorConfig`; `meta` must hold `data_channels` and
    `condition_channels` and is stored in the checkpoint so `rebuild_flow_model` needs nothing else.
    A killed run resumes from `checkpoint_path` and loses at most `config.checkpoint_every_steps` steps.
    Under torchrun each rank trains on its rows of the global batch (`distributed.py`); rank 0 writes.
    `loss_weight` maps each row's condition mask to per-pixel weights of the error (plain mean without it).
    `compile_loop=False` keeps this loop eager under `--compile` (`device.set_compile`).
    """
    stage = stage or kind
    with torch.random.fork_rng(devices=[]):  # initial weights from the config's seed: the same generator twice
        torch.manual_seed(config.seed)
        model = build_velocity_unet(meta["data_channels"], meta["condition_channels"], config).to(device)
    ema = make_ema(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=getattr(config, "weight_decay", 0.0))
    generator = seeded_generator(config.seed)
    noise_generator = seeded_generator(0, device) if device.type == "cuda" else None  # reseeded from `generator`
    history: dict[str, list] = {"step": [], "loss": []}
    step = 0

    # Resume.
    if resume and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"])
        step, history = state["step"], state["history"]
        progress = StageProgress(on_event, stage, config.num_steps, start_step=step)
        progress.log(f"resumed from step {step}")
    else:
        progress = StageProgress(on_event, stage, config.num_steps)

    def save() -> None:
        save_checkpoint(checkpoint_path, flow_checkpoint(kind, model, ema, optimizer, step, config, meta,
                                                         generator, history))

    model.train()
    net = distributed.wrap(model, device)
    net = compiled(net) if compile_loop else net  # saves and EMA read `model`, whose keys are unprefixed
    # The saved average is the one at the last report, which is the save step whenever saves fall on multiples of 10.
    running = RunningLoss(history["loss"][-1] if history["loss"] and history["step"][-1] == step else None)
    while step < config.num_steps:
        # Sample path: the global batch, then this rank's rows of it.
        x1, mask = batch_fn(generator)
        x0 = gaussian_noise(tuple(x1.shape), generator, device, noise_generator)
        t = to_device(sample_time(x1.shape[0], config.t_sampling, config.t_logit_mean, config.t_logit_std,
                                generator), device)
        x0, x1, t, mask = distributed.shard(x0, x1, t, mask)
        path = interpolate(x0, x1, t)

        # Update weights.
        with autocast(device):
            velocity = net(path.x_t, path.t, mask)
        loss = flow_matching_loss(velocity, path, None if loss_weight is None or mask is None else loss_weight(mask))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        step += 1

        # Update EMA.
        update_ema(ema, model, config.ema_halflife_steps)

        # Report (the loss is read from the device only here and before a save).
        running.add(loss)
        saving = step % config.checkpoint_every_steps == 0 or step == config.num_steps
        if step % 10 == 0 or saving:
            smoothed = running.read(stage, step)
            if step % 10 == 0 or step == config.num_steps:
                history["step"].append(step)
                history["loss"].append(smoothed)
                progress.update(step, loss=smoothed)

        # Save snapshot.
        if saving:
            save()
    if step == 0:
        save()
    distributed.barrier()  # the other ranks read what rank 0 saved next
    return ema.eval()
