"""The stages as library calls over a run folder; the CLI, the Slicer module and the benchmark all call these.

Each stage reads what the previous ones left in the run folder, so stages can run as separate commands
(`train`, `align`, `synthesize`) or all at once (`run`), and every stage resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .atomic import replace_folder
from .checkpoint import load_checkpoint, save_checkpoint
from .config import (ImageGeneratorConfig, MaskGeneratorConfig, RunConfig, SynthesisConfig, replace,
                     to_dict, validate)
from .data.folders import PairSet, load_pairs, load_references, require_trainable, write_pairs
from .errors import RunFolderError
from .events import EventCallback, StageProgress, ignore_events
from .run_folder import RunFolder
from .segmenter.export import ExportedSegmenter, export_segmenter, is_current_export
from .segmenter.train import train_segmenter
from .synthesis import generate_images, generate_masks, select_by_judge
from .train.align import SELECTIONS, align_generator
from .train.flow_matching import rebuild_flow_model
from .train.generators import lesion_loss_weight, train_image_generator, train_mask_generator
from .version import __version__

log = logging.getLogger(__name__)


def _source_pairs(run: RunFolder, config: RunConfig, inputs: dict[str, Any]) -> PairSet:
    if not inputs.get("source"):
        raise RunFolderError("config.json names no source pair folder", run.config_path)
    pairs = load_pairs(Path(inputs["source"]), config.data)
    require_trainable(pairs, Path(inputs["source"]))
    return pairs


def start_run(run_dir: Path, config: RunConfig, inputs: dict[str, Any], resume: bool) -> tuple[RunFolder, RunConfig,
                                                                                               dict[str, Any]]:
    """Create a run folder, or reopen one with `resume` (its stored config wins over new settings)."""
    run = RunFolder(Path(run_dir))
    if resume:
        stored_config, stored_inputs = run.load_config()
        stored_inputs.update({k: v for k, v in inputs.items() if v is not None})
        run.save_config(stored_config, stored_inputs)
        return run, stored_config, stored_inputs
    if run.has_checkpoints():
        raise RunFolderError("already holds a run; add --resume to continue it or choose a new --out folder",
                             run.root)
    run.save_config(config, inputs)
    return run, config, inputs


def train_generators(run: RunFolder, device: torch.device, resume: bool = False,
                     on_event: EventCallback = ignore_events) -> None:
    """Stage 1: the image generator and the mask generator on the run's source pairs."""
    config, inputs = run.load_config()
    pairs = _source_pairs(run, config, inputs)
    StageProgress(on_event, "data", 1).log(f"{len(pairs)} source pairs at {config.data.image_size_px} px")
    train_image_generator(pairs, config.image_generator, config.data, device, run.image_generator, resume, on_event)
    train_mask_generator(pairs, config.mask_generator, device, run.mask_generator, resume, on_event)


def load_image_generator(path: Path, device: torch.device):
    """For sampling only: frozen, so every loaded generator meets `--compile` with the same guards."""
    return rebuild_flow_model(load_checkpoint(path), ImageGeneratorConfig).to(device).requires_grad_(False)


def load_mask_generator(path: Path, device: torch.device):
    return rebuild_flow_model(load_checkpoint(path), MaskGeneratorConfig).to(device).requires_grad_(False)


def ensure_source_segmenter(run: RunFolder, pairs: PairSet, config: RunConfig, device: torch.device,
                            resume: bool, on_event: EventCallback) -> ExportedSegmenter:
    """The frozen source-only segmenter: the mask-consistency judge in stage 2 and the source-only baseline.

    It is trained with strong photometric augmentation so that it judges whether the conditioning mask is still
    *there*, not whether the image still *looks like the source* — otherwise the judge fights the reward.
    """
    exported = run.source_segmenter / "exported"
    if not is_current_export(exported):  # none yet, or an old TorchScript one: (re)made from its checkpoint
        judge_config = replace(config.segmenter, strong_augment=True)
        model = train_segmenter(pairs.images, pairs.masks, judge_config, device, on_event,
                                checkpoint_path=run.checkpoint("source_segmenter_last"),
                                resume=resume or run.checkpoint("source_segmenter_last").is_file(),
                                stage="source_segmenter")
        export_segmenter(model, exported, architecture=config.segmenter.architecture,
                         in_channels=pairs.images.shape[1], image_size_px=config.data.image_size_px,
                         resize_mode=config.data.resize_mode,
                         training_summary={"data": "source only", "num_pairs": len(pairs),
                                           "config": to_dict(judge_config)})
    return ExportedSegmenter.load(exported, device=device)


def alignment_masks(run: RunFolder, config: RunConfig, pairs: PairSet, device: torch.device,
                    count: int | None = None) -> torch.Tensor:
    """The masks that condition the rewarded samples: the mask generator's first `count` accepted masks from the
    synthesis seed (the very masks synthesis starts with), or real source masks when the config asks for them.

    By default `count` is 256, or steps x batch + evaluation images when that is smaller: a short alignment then
    samples no more masks than it can draw (sampling 256 took most of such a run's time). The presets draw more
    than 256, so they are unchanged; a short run's draws differ from what they were with 256."""
    if count is None:
        count = min(256, config.align.num_steps * config.align.batch_size + config.align.eval_num_images)
    if config.align.condition_masks == "source" or not run.mask_generator.is_file():
        return pairs.masks
    if config.align.condition_masks != "generated":
        raise ValueError(f"unknown align.condition_masks {config.align.condition_masks!r}; choose generated or source")
    generated = generate_masks(load_mask_generator(run.mask_generator, device), count, config.synthesis.seed,
                               pairs.masks, config.mask_generator, device)
    return generated.masks if len(generated.masks) else pairs.masks


def align(run: RunFolder, references_dir: Path, device: torch.device, resume: bool = False,
          on_event: EventCallback = ignore_events, condition_masks: torch.Tensor | None = None,
          out_dir: Path | None = None) -> dict[str, Any]:
    """Stage 2: fine-tune the stage-1 generator towards the references; saves `aligned_generator.pt`.

    `condition_masks` (computed by `alignment_masks` when not given) lets a caller that aligns many times reuse them.
    `out_dir` puts the aligned generator and its resumable state there instead of in the run folder, and leaves the
    run's metrics alone, so that several reference sets can be aligned at once from one stage 1 (the benchmark).
    """
    config, inputs = run.load_config()
    pairs = _source_pairs(run, config, inputs)
    references = load_references(Path(references_dir), config.data)
    if not run.image_generator.is_file():
        raise RunFolderError("has no trained image generator; run `alignflow train` first", run.root)
    stage1_state = load_checkpoint(run.image_generator)
    stage1 = rebuild_flow_model(stage1_state, ImageGeneratorConfig).to(device)
    segmenter = ensure_source_segmenter(run, pairs, config, device, resume, on_event)
    if condition_masks is None:
        condition_masks = alignment_masks(run, config, pairs, device)
    state_path = Path(out_dir) / "align_state.pt" if out_dir else run.align_state
    generator_path = Path(out_dir) / "aligned_generator.pt" if out_dir else run.aligned_generator
    result = align_generator(stage1, pairs.images, pairs.masks, references.images, config.align, device,
                             state_path, segmenter=segmenter, resume=resume,
                             mask_dropout=config.image_generator.mask_dropout, on_event=on_event,
                             condition_masks=condition_masks,
                             anchor_loss_weight=lesion_loss_weight(
                                 pairs.masks, float(stage1_state["config"].get("mask_loss_weight", 0.0))))
    aligned_state = result.model.state_dict()
    save_checkpoint(generator_path, {
        "kind": "image_generator", "library_version": __version__, "step": stage1_state["step"],
        "config": stage1_state["config"], "meta": {**stage1_state["meta"], "aligned": True,
                                                   "references": references.names},
        "model": aligned_state, "ema": aligned_state, "align": {"best_step": result.best_step,
                                                                "stopped_early": result.stopped_early,
                                                                "history": result.history}})
    summary = {"best_step": result.best_step, "stopped_early": result.stopped_early,
               "num_references": len(references), "eval_step": result.history.get("eval_step", []),
               "criterion": SELECTIONS[config.align.selection], "heldout_mmd": result.history.get("heldout_mmd", [])}
    if "selection_baseline" in result.history:  # patch SWD of stage 1 at each pyramid level: the criterion's unit
        summary["selection_baseline"] = result.history["selection_baseline"]
    if out_dir is None:
        run.update_metrics(align=summary)
    distributed.barrier()  # the aligned generator is on disk for every rank
    return summary


def synthesize(run: RunFolder, device: torch.device, config: SynthesisConfig | None = None, out_dir: Path | None = None,
               generator: str = "aligned", on_event: EventCallback = ignore_events,
               checkpoint: Path | None = None) -> Path:
    """Write `config.num_pairs` generated pairs (pair k from seed `config.seed + k`) with a manifest, replacing what
    `out_dir` held. `checkpoint` names an image generator outside the run folder (`generator` then only labels it).
    With `config.judge_keep_fraction` below 1, more candidates are drawn and the run's source segmenter keeps the
    pairs it segments best (made first if the run has none); a kept pair is the same as unfiltered synthesis makes,
    but a filtered set of N pairs is not the start of a filtered set of more."""
    run_config, inputs = run.load_config()
    config = config or run_config.synthesis
    validate(config, "synthesis.")  # callers pass edited copies (`replace` checks nothing)
    out_dir = Path(out_dir) if out_dir else run.synthetic
    if checkpoint is None:
        checkpoint = run.aligned_generator if generator == "aligned" else run.image_generator
    if not checkpoint.is_file():
        step = "align" if generator == "aligned" else "train"
        raise RunFolderError(f"has no {generator} generator; run `alignflow {step}` first", run.root)
    image_model = load_image_generator(checkpoint, device)
    pairs = _source_pairs(run, run_config, inputs)
    candidates = math.ceil(config.num_pairs / config.judge_keep_fraction - 1e-9)  # 21 / 0.7: 30, not 31
    progress = StageProgress(on_event, "synthesize", candidates)
    if config.mask_source == "generated":
        mask_model = load_mask_generator(run.mask_generator, device)
        generated = generate_masks(mask_model, candidates, config.seed, pairs.masks, run_config.mask_generator,
                                   device)
        masks, mask_stats = generated.masks, generated.stats
        if len(masks) < candidates:
            progress.log(f"mask generator gave only {len(masks)} acceptable masks of {candidates} asked")
    else:  # "source": `validate` above allows nothing else
        order = torch.arange(candidates) % len(pairs)
        masks, mask_stats = pairs.masks[order], {"source": "real source masks"}
        if config.start_time > 0:
            mask_stats["translated_from"] = f"the real source images of these masks, from t0 = {config.start_time:g}"
    images = []
    for start in range(0, len(masks), config.batch_size):
        chunk = masks[start:start + config.batch_size]
        seeds = list(range(config.seed + start, config.seed + start + len(chunk)))
        init = pairs.images[order[start:start + len(chunk)]] if config.start_time > 0 else None
        images.append(generate_images(image_model, chunk, seeds, config.sampler, device, config.batch_size,
                                      init_images=init, start_time=config.start_time))
        progress.update(start + len(chunk))
    images_t = torch.cat(images) if images else torch.empty(0)
    kept, judge_filter = list(range(len(masks))), None
    if len(masks) > config.num_pairs:  # there is something to choose from
        if distributed.world().size > 1 and not is_current_export(run.source_segmenter / "exported"):
            # Training it here would wait for ranks that are not synthesising (only rank 0 samples).
            raise RunFolderError("has no source segmenter to judge the pairs; run `alignflow align` first", run.root)
        judge = ensure_source_segmenter(run, pairs, run_config, device, True, on_event)
        selection = select_by_judge(judge, images_t, masks, config.num_pairs)
        kept = selection.kept
        images_t, masks = images_t[kept], masks[kept]
        judge_filter = {"keep_fraction": config.judge_keep_fraction, "candidates": len(selection.dice),
                        "kept": len(kept), "judge": str(run.source_segmenter / "exported"),
                        "judge_dice_candidates_mean": float(selection.dice.mean()),
                        "judge_dice_kept_mean": float(selection.dice[kept].mean()),
                        "judge_dice_kept_min": float(selection.dice[kept].min()),
                        "judge_dice_kept": [round(float(d), 4) for d in selection.dice[kept]]}
        progress.log(f"the judge kept {len(kept)} of {len(selection.dice)} candidate pairs (its Dice: "
                     f"{judge_filter['judge_dice_kept_mean']:.3f} kept, "
                     f"{judge_filter['judge_dice_candidates_mean']:.3f} all)")
    seeds = [config.seed + k for k in kept]
    names = [f"synth_{seed:06d}" for seed in seeds]
    manifest = {"library_version": __version__, "generator": generator, "checkpoint": str(checkpoint),
                "run": str(run.root), "seeds": seeds, "config": to_dict(config), "mask_generator": mask_stats,
                "names": names}
    if judge_filter is not None:
        manifest["judge_filter"] = judge_filter
    # Written beside and swapped in: a kill or a full disk while writing leaves the previous pairs as they were.
    return replace_folder(out_dir, lambda folder: write_pairs(folder, images_t, masks, names, manifest))


def train_final_segmenter(run: RunFolder, device: torch.device, synthetic_dir: Path | None = None,
                          resume: bool = False, on_event: EventCallback = ignore_events) -> Path:
    """Segmenter on source + synthetic pairs, exported to RUN/segmenter/exported."""
    config, inputs = run.load_config()
    pairs = _source_pairs(run, config, inputs)
    synthetic = load_pairs(Path(synthetic_dir or run.synthetic), config.data)
    model = train_segmenter(pairs.images, pairs.masks, config.segmenter, device, on_event,
                            synthetic_images=synthetic.images, synthetic_masks=synthetic.masks,
                            checkpoint_path=run.checkpoint("segmenter_last"), resume=resume, stage="segmenter")
    return export_segmenter(model, run.segmenter / "exported", architecture=config.segmenter.architecture,
                            in_channels=pairs.images.shape[1], image_size_px=config.data.image_size_px,
                            resize_mode=config.data.resize_mode,
                            training_summary={"data": "source + AlignFlow synthetic", "num_source_pairs": len(pairs),
                                              "num_synthetic_pairs": len(synthetic),
                                              "config": to_dict(config.segmenter)})


def evaluate_exported(model_dir: Path, data_dir: Path, device: torch.device) -> dict[str, Any]:
    """mDice/mIoU (per image, threshold 0.5) of an exported segmenter on a pair folder."""
    segmenter = ExportedSegmenter.load(Path(model_dir), device=device)
    from .config import DataConfig

    meta = segmenter.meta
    data = load_pairs(Path(data_dir), DataConfig(image_size_px=meta["image_size_px"], channels=meta["in_channels"],
                                                 resize_mode=meta.get("resize_mode", "letterbox")))
    probs = segmenter.predict_probs(data.images)
    from .segmenter.metrics import dice_iou, summarize

    result = summarize(*dice_iou(probs > meta.get("threshold", 0.5), data.masks > 0.5))
    result["names"] = data.names
    return result


def run_all(run: RunFolder, references_dir: Path, device: torch.device, test_dir: Path | None = None,
            resume: bool = False, on_event: EventCallback = ignore_events) -> dict[str, Any]:
    """Everything: stage 1, stage 2, synthesis, segmenter on source + synthetic, and (optionally) evaluation."""
    # Fail on bad references or test data now, not after an hour of training.
    config, _ = run.load_config()
    load_references(Path(references_dir), config.data)
    if test_dir is not None:
        load_pairs(Path(test_dir), config.data)
    train_generators(run, device, resume, on_event)
    align(run, references_dir, device, resume, on_event)
    if distributed.is_main():  # sampling is not data parallel: rank 0 writes the pairs, the others wait
        synthesize(run, device, on_event=on_event)
    distributed.barrier()
    exported = train_final_segmenter(run, device, resume=resume, on_event=on_event)
    results: dict[str, Any] = {"segmenter": str(exported)}
    if test_dir is not None and distributed.is_main():
        results["target_test"] = {
            "source_only": _brief(evaluate_exported(run.source_segmenter / "exported", test_dir, device)),
            "source_plus_aligned_synthetic": _brief(evaluate_exported(exported, test_dir, device)),
        }
        run.update_metrics(target_test=results["target_test"])
    return results


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {"mdice": result["mdice"], "miou": result["miou"], "num_images": result["num_images"]}
