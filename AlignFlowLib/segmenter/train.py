"""Training the downstream segmenter on real source pairs plus, optionally, synthetic pairs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import distributed
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import SegmenterConfig, from_dict
from ..device import autocast, seeded_generator, to_device
from ..errors import InputDataError, RunFolderError
from ..events import EventCallback, StageProgress, ignore_events
from ..baselines.augment import classic_augment, flip_rows, turn_rows
from ..flow.ema import make_ema, update_ema
from ..train.running_loss import RunningLoss
from .metrics import dice_iou, summarize
from .model import build_segmenter


def augment_pairs(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random dihedral transform per sample (flip, then 0–3 quarter turns; the same for image and mask) and mild
    photometric jitter per sample (contrast ±10 %, brightness ±0.1, gamma in [0.86, 1.16]; image only).

    images: (B, C, S, S) in [-1, 1]; masks: (B, 1, S, S). Square inputs, so every turn keeps the shape. The draws
    come from the CPU `generator` whatever the tensors' device, so a seed gives the same transforms on any device,
    and nothing here makes the host wait for the GPU.
    """
    batch, device = images.shape[0], images.device
    images, masks = flip_rows(torch.rand(batch, generator=generator) < 0.5, -1, images, masks)
    images, masks = turn_rows(torch.randint(4, (batch,), generator=generator), images, masks)  # new tensors: in place
    contrast = to_device(1 + 0.2 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5), device)
    brightness = to_device(0.2 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5), device)
    gamma = to_device(torch.exp(0.3 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5)), device)
    unit = ((images + 1) / 2).clamp(0, 1) ** gamma
    images = ((unit * 2 - 1) * contrast + brightness).clamp(-1, 1)
    return images.contiguous(), masks.contiguous()


def batch_composition(batch_size: int, synthetic_ratio: float, has_synthetic: bool) -> tuple[int, int]:
    """(real, synthetic) counts per batch: round(batch_size · ratio) synthetic when a synthetic pool exists."""
    synthetic = min(batch_size, max(0, round(batch_size * synthetic_ratio))) if has_synthetic else 0
    return batch_size - synthetic, synthetic


def _check_pairs(images: torch.Tensor, masks: torch.Tensor, what: str) -> None:
    """Images (N, C, S, S) and masks (N, 1, S, S) must agree; a mismatch is the user's data, not a bug."""
    if images.ndim != 4 or masks.ndim != 4 or masks.shape[1] != 1 or len(images) != len(masks) \
            or images.shape[-2:] != masks.shape[-2:]:
        raise InputDataError(f"{what} pairs do not match: images {tuple(images.shape)} vs masks {tuple(masks.shape)}; "
                             "expected (N, C, S, S) and (N, 1, S, S)")


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """BCE with logits + soft Dice over the batch (fp32). Under torchrun the Dice's sums run over the global batch,
    so the loss is the one a single process computes on it."""
    logits, masks = logits.float(), masks.float()
    probs = torch.sigmoid(logits)
    sums = distributed.sum_over_ranks(torch.stack([(probs * masks).sum(), probs.sum() + masks.sum()]))
    # Each rank holds the global Dice; its gradient reaches every rank's rows N times (the all-reduce's backward
    # sums), and DDP's averaging divides by N: the BCE is a mean of rank means, so it is simply averaged.
    soft_dice = 1 - (2 * sums[0] + 1) / (sums[1] + 1)
    return F.binary_cross_entropy_with_logits(logits, masks) + soft_dice


def train_segmenter(images: torch.Tensor, masks: torch.Tensor, config: SegmenterConfig, device: torch.device,
                    on_event: EventCallback = ignore_events, synthetic_images: torch.Tensor | None = None,
                    synthetic_masks: torch.Tensor | None = None, checkpoint_path: Path | None = None,
                    resume: bool = False, stage: str = "segmenter") -> torch.nn.Module:
    """Train a segmenter on (N, C, S, S) images in [−1, 1] and (N, 1, S, S) masks; returns it in eval mode.

    With synthetic pairs, each batch takes round(batch_size · synthetic_ratio) of them and the rest from real pairs.
    With `config.ema_halflife_steps` > 0 the returned model holds the EMA of the weights.
    Initial weights, batches and augmentation all follow `config.seed`, so a resumed run (model, optimiser,
    scheduler and generator state restored from `checkpoint_path`) ends where an uninterrupted one would.
    """
    _check_pairs(images, masks, "real")
    has_synthetic = synthetic_images is not None and len(synthetic_images) > 0
    if has_synthetic:
        if synthetic_masks is None:
            raise InputDataError("synthetic images were given without synthetic masks")
        _check_pairs(synthetic_images, synthetic_masks, "synthetic")
        if len(images) and synthetic_images.shape[1:] != images.shape[1:]:
            raise InputDataError(f"synthetic images {tuple(synthetic_images.shape[1:])} do not match real images "
                                 f"{tuple(images.shape[1:])} in channels or size")
    if len(images) == 0 and not has_synthetic:
        raise InputDataError("no training pairs: both the real and the synthetic sets are empty")
    with torch.random.fork_rng(devices=[]):  # initial weights from config.seed, caller's global RNG untouched
        torch.manual_seed(config.seed)
        model = build_segmenter(config.architecture, images.shape[1]).to(device)
    model = model.to(memory_format=torch.channels_last)  # measured 1.2-1.4x faster on the 2-core CPU
    ema = make_ema(model) if config.ema_halflife_steps > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.num_steps, 1))
    generator = seeded_generator(config.seed)
    num_real, num_synthetic = batch_composition(config.batch_size, config.synthetic_ratio, has_synthetic)
    if len(images) == 0:
        num_real, num_synthetic = 0, config.batch_size
    step, save_every = 0, max(50, config.num_steps // 10)
    smoothed: float | None = None  # the reported average, saved so that a resumed run continues its curve

    def snapshot() -> dict[str, Any]:
        return {"kind": "segmenter", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "config": dataclasses.asdict(config),
                "architecture": config.architecture, "in_channels": images.shape[1], "rng": generator.get_state(),
                "distributed": distributed.world().describe(), "smoothed_loss": smoothed,
                **({"ema": ema.state_dict()} if ema is not None else {})}

    # Resume.
    progress = StageProgress(on_event, stage, config.num_steps)
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["rng"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            step = int(state["step"])
            smoothed = state.get("smoothed_loss")  # absent in checkpoints written before it was saved
        except (KeyError, RuntimeError, ValueError) as error:  # another architecture / channel count, or foreign file
            raise RunFolderError(f"checkpoint does not match this segmenter ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0][:120]})", checkpoint_path) from error
        progress = StageProgress(on_event, stage, config.num_steps, start_step=step)
        progress.log(f"resumed from step {step}")

    model.train()
    net = distributed.wrap(model, device)  # never compiled: its loop measured slower compiled (device.set_compile)
    running = RunningLoss(smoothed)
    while step < config.num_steps:
        # Sample the global batch (this rank trains on its rows of it).
        parts_x, parts_y = [], []
        if num_real:
            index = torch.randint(len(images), (num_real,), generator=generator)
            parts_x.append(images[index]), parts_y.append(masks[index])
        if num_synthetic:
            index = torch.randint(len(synthetic_images), (num_synthetic,), generator=generator)
            parts_x.append(synthetic_images[index]), parts_y.append(synthetic_masks[index])
        # Augmented on the device, from draws made on the CPU generator (the same transforms on any device, except
        # the strong recipe's pixel noise, which a GPU draws itself from a seed: baselines/augment.py).
        x, y = to_device(torch.cat(parts_x), device).float(), to_device(torch.cat(parts_y), device).float()
        if config.augment:
            x, y = augment_pairs(x, y, generator)
        if config.strong_augment:
            x, y = classic_augment(x, y, generator)
        x, y = distributed.shard(x, y)

        # Update weights.
        with autocast(device, cuda_bf16=False):  # fp32 measured faster on CUDA (device.autocast)
            logits = net(x.contiguous(memory_format=torch.channels_last))
        loss = segmentation_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            update_ema(ema, model, config.ema_halflife_steps)
        step += 1

        # Report (the loss is read from the device only here and before a save).
        running.add(loss)
        saving = checkpoint_path is not None and (step % save_every == 0 or step == config.num_steps)
        if step % 10 == 0 or step == config.num_steps or step % save_every == 0:  # the same steps on every rank
            smoothed = running.read(stage, step)
            if step % 10 == 0 or step == config.num_steps:
                progress.update(step, loss=smoothed)

        # Save snapshot.
        if saving:
            save_checkpoint(checkpoint_path, snapshot())
    distributed.barrier()  # the other ranks may read the checkpoint rank 0 wrote
    final = ema if ema is not None else model
    return final.to(memory_format=torch.contiguous_format).eval()


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: torch.Tensor, device: torch.device,
                  batch_size: int = 32) -> torch.Tensor:
    """(N, 1, S, S) foreground probabilities on CPU."""
    model.eval()
    out = [torch.sigmoid(model(images[i:i + batch_size].to(device)).float()).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 1, *images.shape[-2:])


def evaluate_segmenter(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, device: torch.device,
                       threshold: float = 0.5) -> dict[str, Any]:
    """mDice/mIoU over images at `threshold`, plus per-image lists."""
    return summarize(*dice_iou(predict_probs(model, images, device) > threshold, masks > 0.5))


def load_segmenter_checkpoint(path: Path) -> torch.nn.Module:
    """Rebuild a segmenter from a training checkpoint (data only: weights_only=True)."""
    state = load_checkpoint(path)
    try:
        architecture = state.get("architecture") or from_dict(SegmenterConfig, state["config"]).architecture
        model = build_segmenter(architecture, int(state["in_channels"]))
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise RunFolderError(f"not a segmenter checkpoint ({type(error).__name__}: {error})", path) from error
    return model.eval()
