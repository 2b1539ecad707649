"""Stage 2, distribution alignment: fine-tune the image generator so its samples match K target references.

Loss per step (DESIGN.md §2):
    L = MMD²_u(φ(G_θ(z, m)), φ(references))                      (the reward is −MMD²)
        + λ_anchor · L_FM(θ; source pairs)                        (stay a good generator of source anatomy)
        + λ_mask · BCE(S(G_θ(z, m)), m)                           (a frozen source segmenter still finds m)
        + λ_colour · MMD²_u(c(G_θ(z, m)), c(references))          (c: colour over tissue, reward/colour.py)
G_θ is the ODE sampler with gradients through its last k steps (DRaFT-k); φ is frozen EfficientNet-Lite0. With
`reward_views`, φ scores random crops and flips of both the generated images and the references, new at every step.
Early stopping uses MMD² to references held out from the reward; or, with the reward on all K references, MMD² to
them in block-10 statistics (selection = all_references) or the multi-scale patch SWD to them (selection = patch_swd),
neither of which the reward scores; the patch SWD uses no network at all, so no blind spot of the reward's extractor
can lower it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import distributed
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import AlignConfig, to_dict
from ..device import autocast, seeded_generator, to_device
from ..errors import InputDataError, RunFolderError, TrainingDivergedError, choose
from ..events import EventCallback, StageProgress, ignore_events
from ..flow.path import flow_matching_loss, interpolate, sample_time
from ..flow.sampler import sample_ode
from ..models.lora import apply_lora, merge_lora
from ..models.velocity import VelocityUNet, drop_masks, guided_velocity
from ..reward.colour import tissue_colour
from ..reward.features import load_feature_extractor
from ..reward.mmd import mmd2_unbiased
from ..reward.patch_swd import patch_swd, pyramid_levels, relative_patch_swd
from ..reward.views import apply_views, random_view_transforms
from ..synthesis import generate_images
from .flow_matching import LossWeightFn
from ..version import __version__


# What each selection mode minimises, as the log names it.
SELECTIONS = {"holdout": "held-out MMD²", "all_references": "block-10 MMD² to all references",
              "patch_swd": "patch SWD to all references (relative to stage 1)"}


def reference_views(images: torch.Tensor) -> torch.Tensor:
    """(K, C, H, W) → (4K, C, H, W) with flips: more samples for the MMD from few references, same appearance."""
    return torch.cat([images, images.flip(-1), images.flip(-2), images.flip(-1, -2)])


def split_references(count: int, holdout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (reward, held-out) of K references; with K = 1 nothing is held out."""
    order = torch.randperm(count, generator=seeded_generator(seed)).tolist()
    num_holdout = 0 if count < 2 else min(count - 1, max(1, round(count * holdout_fraction)))
    return sorted(order[num_holdout:]), sorted(order[:num_holdout])


@dataclass
class AlignResult:
    model: VelocityUNet                          # the aligned generator (adapters merged), eval mode
    best_step: int
    stopped_early: bool
    # per step: loss, mmd, anchor, mask, colour; per evaluation: eval_step and heldout_mmd, the selection criterion's
    # value whatever the mode (relative patch SWD under patch_swd, whose stage-1 levels are in selection_baseline)
    history: dict[str, list] = field(default_factory=dict)


def _mask_consistency(segmenter: Any, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """BCE between a frozen segmenter's logits on generated images and their conditioning masks."""
    logits = segmenter.logits(images.float())
    return F.binary_cross_entropy_with_logits(logits.float(), masks.float())


def _colour_of(references: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Colour descriptors of the references themselves: flips do not change an image's colour statistics, so the
    flipped copies would only add identical points (and shrink the kernel's median bandwidth). With a single
    reference the copies stand in, since the unbiased MMD² needs two points a side."""
    return tissue_colour(references if len(references) >= 2 else flipped).to(flipped.device)


@torch.no_grad()
def _features(extractor, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    return torch.cat([extractor(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def align_generator(stage1_model: VelocityUNet, source_images: torch.Tensor, source_masks: torch.Tensor,
                    references: torch.Tensor, config: AlignConfig, device: torch.device, checkpoint_path: Path,
                    segmenter: Any | None = None, resume: bool = False, mask_dropout: float = 0.1,
                    on_event: EventCallback = ignore_events,
                    condition_masks: torch.Tensor | None = None,
                    anchor_loss_weight: LossWeightFn | None = None) -> AlignResult:
    """Fine-tune a copy of `stage1_model` towards the references' feature distribution.

    Args:
        stage1_model: the stage-1 (EMA) image generator; not modified.
        source_images, source_masks: (N, C, S, S) in [−1, 1] and (N, 1, S, S) in {0, 1}: anchor data and the
            conditioning masks for generated samples.
        references: (K, C, S, S) in [−1, 1], images only, K ≥ 1.
        segmenter: an `ExportedSegmenter` trained on the source (for the mask-consistency term), or None.
        condition_masks: (M, 1, S, S) masks that condition the rewarded samples; default the source masks. Passing
            the mask generator's output aligns the generator on the masks synthesis will use.
        anchor_loss_weight: the per-pixel weighting stage 1 was trained with (`lesion_loss_weight`), so that the
            anchor is stage 1's own loss and does not pull a lesion-weighted generator back towards the plain mean.

    Raises:
        InputDataError: no references.
        TrainingDivergedError: a non-finite loss.
    """
    if len(references) == 0:
        raise InputDataError("no reference images given for alignment")
    choose("adapter", config.adapter, ("full", "lora"))
    progress = StageProgress(on_event, "align", config.num_steps)
    generator = seeded_generator(config.seed)

    # Selection: either split the references (the reward sees one part, early stopping the other), or give the
    # reward all of them and stop on a distance to all of them that the reward does not score.
    choose("selection", config.selection, SELECTIONS)
    extractor = load_feature_extractor(config.feature_size_px, config.style_weight, device, config.style_region)
    if config.selection == "holdout":
        reward_idx, holdout_idx = split_references(len(references), config.holdout_fraction, config.seed)
    else:
        reward_idx, holdout_idx = list(range(len(references))), list(range(len(references)))
    if not holdout_idx:
        progress.log("K=1 reference: none can be held out, so early stopping is off and all steps run")
    reward_references = reference_views(references[reward_idx]).to(device)
    reward_features = _features(extractor, reward_references)
    scores_colour = config.colour_weight > 0
    reward_colour = _colour_of(references[reward_idx], reward_references) if scores_colour else None
    selection_references = reference_views(references[holdout_idx]) if holdout_idx else None
    if selection_references is not None and config.selection == "patch_swd":
        swd_references, swd_levels = selection_references.float().cpu(), pyramid_levels(min(references.shape[-2:]))

        def selection_distance(images: torch.Tensor) -> float:
            levels = patch_swd(images.float().cpu(), swd_references, swd_levels, seed=config.seed)
            if not history.get("selection_baseline"):  # the first evaluation is stage 1's own: each level's unit
                history["selection_baseline"] = levels
            return relative_patch_swd(levels, history["selection_baseline"])
    elif selection_references is not None:
        select_features = extractor if config.selection == "holdout" else extractor.selection_features
        holdout_features = _features(select_features, selection_references.to(device))
        scores_holdout_colour = scores_colour and config.selection == "holdout"  # held out from the same reward
        if scores_holdout_colour:
            holdout_colour = _colour_of(references[holdout_idx], selection_references).to(device)

        def selection_distance(images: torch.Tensor) -> float:
            images = images.to(device)
            distance = mmd2_unbiased(_features(select_features, images), holdout_features, config.kernel)
            if scores_holdout_colour:
                distance = distance + config.colour_weight * mmd2_unbiased(tissue_colour(images), holdout_colour,
                                                                           config.kernel)
            return float(distance)

    # Model: a trainable copy, fully or through low-rank adapters.
    model = copy.deepcopy(stage1_model).to(device).train()
    model.requires_grad_(True)
    if config.adapter == "lora":
        with torch.random.fork_rng(devices=[]):  # adapter initialisation from the config's seed
            torch.manual_seed(config.seed)
            apply_lora(model, config.lora_rank)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)

    # Fixed evaluation batch: the same masks and noise at every evaluation.
    if condition_masks is None or len(condition_masks) == 0:
        condition_masks = source_masks
    eval_count = min(config.eval_num_images, len(condition_masks))
    eval_index = torch.randperm(len(condition_masks), generator=seeded_generator(config.seed + 1))[:eval_count]
    eval_masks, eval_seeds = condition_masks[eval_index], list(range(10_000, 10_000 + eval_count))

    def heldout_mmd() -> float | None:
        """The selection criterion (lower is better). Rank 0 scores, every rank receives its number: one
        early-stopping decision for all ranks."""
        if selection_references is None:
            return None
        value = torch.zeros((), dtype=torch.float64, device=device)
        if distributed.is_main():
            images = generate_images(model, eval_masks, eval_seeds, config.sampler, device, compile_model=False)
            model.train()  # generate_images switched it to eval; all ranks stay in one mode
            value += selection_distance(images)
        return float(distributed.broadcast_from_main(value))

    step, best_step, best_metric, bad_evals, stopped_early = 0, 0, math.inf, 0, False
    history: dict[str, list] = {"step": [], "loss": [], "mmd": [], "anchor": [], "mask": [], "colour": [],
                                "eval_step": [], "heldout_mmd": []}
    best_state = None

    def snapshot() -> dict[str, Any]:
        return {"kind": "align_state", "library_version": __version__, "step": step, "config": to_dict(config),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": generator.get_state(),
                "history": history, "best_step": best_step, "best_metric": best_metric, "bad_evals": bad_evals,
                "stopped_early": stopped_early, "distributed": distributed.world().describe(),
                "best_model": best_state if best_state is not None else {}}

    # Resume.
    if resume and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        # Another criterion puts its best metric and step on another scale; other views or style, another objective.
        for name, default in (("selection", "holdout"), ("reward_views", False), ("style_region", "all"),
                              ("style_weight", config.style_weight), ("colour_weight", 0.0)):
            stored, wanted = state["config"].get(name, default), getattr(config, name)
            if stored != wanted:
                raise RunFolderError(f"{checkpoint_path}: alignment was started with {name}={stored}, "
                                     f"cannot resume it with {name}={wanted}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"])
        step, history, best_step = state["step"], state["history"], state["best_step"]
        best_metric, bad_evals, stopped_early = state["best_metric"], state["bad_evals"], state["stopped_early"]
        best_state = state["best_model"] or None
        history.setdefault("colour", [0.0] * len(history["step"]))  # checkpoints from before the term: it was off
        progress = StageProgress(on_event, "align", config.num_steps, start_step=step)
        progress.log(f"resumed from step {step}")
    elif selection_references is not None:
        best_metric = heldout_mmd()
        best_state = copy.deepcopy(model.state_dict())
        history["eval_step"].append(0)
        history["heldout_mmd"].append(best_metric)
        progress.log(f"{SELECTIONS[config.selection]} before alignment: {best_metric:.4f} "
                     f"({len(reward_idx)} reward / {len(holdout_idx)} selection references)")

    net = distributed.wrap(model, device)  # under torchrun: this rank's rows of each global batch, DDP gradients
    while step < config.num_steps and not stopped_early:
        # Generate a batch through the differentiable sampler.
        index = torch.randint(len(condition_masks), (config.batch_size,), generator=generator)
        masks = condition_masks[index].to(device)
        noise = torch.randn((config.batch_size, *source_images.shape[1:]), generator=generator).to(device)
        masks, noise = distributed.shard(masks, noise)
        with autocast(device):
            images = sample_ode(guided_velocity(net, masks, config.sampler.guidance_scale), noise,
                                config.sampler.method, config.sampler.num_steps, config.grad_last_steps,
                                config.checkpoint_activations)

        # Reward: MMD² to the references in feature space, on the pixels synthesis will write; a distribution-level
        # term, so every rank scores the features of the whole global batch (gathered with their gradients).
        if config.clamp_reward_input:
            images = images.clamp(-1, 1)
        rewarded, target_features, target_colour = images, reward_features, reward_colour
        if config.reward_views:  # fresh views of both sides; drawn for the global batch, so ranks agree
            crops = to_device(distributed.shard(random_view_transforms(config.batch_size, generator)), device)
            reference_crops = to_device(random_view_transforms(len(reward_references), generator), device)
            rewarded = apply_views(rewarded, crops)
            viewed_references = apply_views(reward_references, reference_crops)
            target_features = _features(extractor, viewed_references)
            if scores_colour:
                target_colour = tissue_colour(viewed_references)
        mmd = mmd2_unbiased(distributed.gather_rows(extractor(rewarded.float())), target_features, config.kernel)
        loss = mmd

        # Colour over tissue: its own MMD², so its scale does not depend on the features'.
        colour = torch.zeros((), device=device)
        if scores_colour:
            colour = mmd2_unbiased(distributed.gather_rows(tissue_colour(rewarded)), target_colour, config.kernel)
            loss = loss + config.colour_weight * colour

        # Anchor: the stage-1 flow-matching loss on source pairs.
        anchor = torch.zeros((), device=device)
        if config.anchor_weight > 0:
            a_index = torch.randint(len(source_images), (config.batch_size,), generator=generator)
            x1, a_mask = source_images[a_index].to(device), drop_masks(source_masks[a_index], mask_dropout,
                                                                          generator).to(device)
            x0 = torch.randn(x1.shape, generator=generator).to(device)
            t = sample_time(len(x1), generator=generator).to(device)
            x0, x1, t, a_mask = distributed.shard(x0, x1, t, a_mask)
            path = interpolate(x0, x1, t)
            with autocast(device):
                anchor = flow_matching_loss(net(path.x_t, path.t, a_mask), path,
                                            None if anchor_loss_weight is None else anchor_loss_weight(a_mask))
            loss = loss + config.anchor_weight * anchor

        # Mask consistency: the frozen source segmenter must still find the conditioning mask.
        consistency = torch.zeros((), device=device)
        if segmenter is not None and config.mask_consistency_weight > 0:
            consistency = _mask_consistency(segmenter, images, masks)
            loss = loss + config.mask_consistency_weight * consistency

        # Update weights.
        if not math.isfinite(loss.item()):
            raise TrainingDivergedError(f"align: non-finite loss at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
        optimizer.step()
        step += 1

        # Report.
        history["step"].append(step)
        metrics = {"loss": loss.item(), "mmd": mmd.item(), "anchor": anchor.item(), "mask": consistency.item(),
                   "colour": colour.item()}
        for key, value in metrics.items():
            history[key].append(value)

        # Early stopping on the selection criterion.
        if selection_references is not None and (step % config.eval_every_steps == 0 or step == config.num_steps):
            metric = heldout_mmd()
            history["eval_step"].append(step)
            history["heldout_mmd"].append(metric)
            metrics["heldout_mmd"] = metric
            if metric < best_metric:
                best_metric, best_step, bad_evals = metric, step, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_evals += 1
                if bad_evals >= config.patience_evals:
                    stopped_early = True
                    progress.log(f"early stop at step {step}: {SELECTIONS[config.selection]} has not improved for "
                                 f"{bad_evals} evaluations (best {best_metric:.4f} at step {best_step})")
        progress.update(step, **metrics)

        # Save snapshot.
        if step % config.checkpoint_every_steps == 0 or step == config.num_steps or stopped_early:
            save_checkpoint(checkpoint_path, snapshot())

    if selection_references is None:
        best_step, best_state = step, model.state_dict()
    if step == 0 and not Path(checkpoint_path).is_file():
        save_checkpoint(checkpoint_path, snapshot())
    distributed.barrier()
    model.load_state_dict(best_state)
    if config.adapter == "lora":
        merge_lora(model)
    model.requires_grad_(False)
    return AlignResult(model.eval(), best_step, stopped_early, history)
