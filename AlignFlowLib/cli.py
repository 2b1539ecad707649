"""`alignflow`: the terminal front end. Flags map onto the config dataclasses here and nowhere else.

Every long command takes `--progress jsonl` (one JSON event per line on stdout, for the Slicer module) or shows a
progress bar on stderr. Failures end with one line `error: <file>: <problem>` and an exit code from `errors.py`.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from .atomic import writes_files
from .bench.methods import METHODS as BENCH_METHODS
from .errors import AlignFlowError, CancelledByUser, RunFolderError, UsageError
from .events import EventFanout, JsonlPrinter, JsonlWriter, ProgressBar
from .job_control import RunFolderLock, StopWatcher

EXIT_CODES_HELP = """exit codes:
  0    success
  1    unexpected internal error (a bug; the traceback is in the run folder's events.jsonl)
  2    command-line usage error
  3    bad input data (missing/empty/unreadable file or folder, image without mask, size mismatch, bad mask)
  4    run-folder problem (nothing to resume, a checkpoint that does not load, the folder in use by another job,
       no space left on the device)
  5    training diverged (non-finite loss)
  130  cancelled (SIGINT/SIGTERM, the ALIGNFLOW_CANCEL_FILE appeared, or the ALIGNFLOW_PARENT_PID process died);
       the run folder stays consistent: continue with --resume
"""


SERVE_EXIT_CODES_HELP = """exit codes:
  0    stopped (Ctrl-C)
  1    unexpected internal error
  2    usage: --root is not a folder, --host off localhost without --token, trame-slicer not installed
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the image generator's training step and the samplers (not the mask "
                             "generator's or the segmenter's training, nor alignment): each process compiles for "
                             "25-75 s first, so it pays off in long GPU runs (README: bf16 and compile)")
    parser.add_argument("--progress", choices=("bar", "jsonl"), default="bar",
                        help="bar: human progress bar on stderr; jsonl: one JSON event per line on stdout")
    parser.add_argument("--seed", type=int, default=None,
                        help="added to every stage's seed (synthesize: the seed of pair 0)")


def _size_and_steps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", help="configuration preset: demo | default")
    parser.add_argument("--image-size", type=int, default=None, help="working resolution in pixels (square)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grey, 3 = RGB")
    parser.add_argument("--slice-axis", type=int, choices=(0, 1, 2), default=None,
                        help="for 3-D volumes: axis to slice along (0=x, 1=y, 2=z)")
    parser.add_argument("--steps", type=int, default=None, help="image-generator training steps")
    parser.add_argument("--mask-steps", type=int, default=None, help="mask-generator training steps")
    parser.add_argument("--align-steps", type=int, default=None, help="stage-2 fine-tuning steps")
    parser.add_argument("--segmenter-steps", type=int, default=None, help="segmenter training steps")
    parser.add_argument("--num", type=int, default=None, help="number of synthetic pairs")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file with RunConfig fields (as in a run folder's config.json 'config')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignflow", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP,
        description="Few-shot distribution-aligned flow matching: synthesise target-styled image-mask pairs "
                    "from source pairs and a few unlabelled target references.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="whole pipeline on built-in phantom domains; writes report.html",
                               epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    _common(demo)

    train = commands.add_parser("train", help="stage 1: image generator + mask generator on source pairs",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--source", type=Path, help="pair folder (images/ + masks/ with matching stems)")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoints")
    _size_and_steps(train)
    _common(train)

    align = commands.add_parser("align", help="stage 2: fine-tune the generator towards target references",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    align.add_argument("--run", type=Path, required=True, help="run folder made by `alignflow train`")
    align.add_argument("--references", type=Path, required=True, help="folder of 1-10 target images (no masks)")
    align.add_argument("--align-steps", type=int, default=None, help="fine-tuning steps")
    align.add_argument("--adapter", choices=("full", "lora"), default=None, help="full fine-tuning or LoRA")
    align.add_argument("--resume", action="store_true")
    _common(align)

    synth = commands.add_parser("synthesize", help="write generated image-mask pairs with a manifest",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--run", type=Path, required=True)
    synth.add_argument("--num", type=int, default=None, help="number of pairs")
    synth.add_argument("--mask-source", choices=("generated", "source"), default=None,
                       help="new masks from the mask generator, or real source masks (ablation)")
    synth.add_argument("--start-time", type=float, default=None,
                       help="0 (default): images from noise; T0 in (0, 0.95]: translate each real source pair, "
                            "regenerating its appearance from time T0 and keeping its mask (needs --mask-source "
                            "source)")
    synth.add_argument("--judge-keep-fraction", type=float, default=None, metavar="F",
                       help="1 keeps every pair (the default unless the run's settings say otherwise); F in "
                            "[0.05, 1): draw NUM/F candidates and keep the NUM whose mask the run's source segmenter "
                            "finds best (trained first if the run has none; the manifest records its Dice)")
    synth.add_argument("--generator", choices=("aligned", "stage1"), default="aligned")
    synth.add_argument("--sampler", choices=("euler", "heun"), default=None)
    synth.add_argument("--sampler-steps", type=int, default=None)
    synth.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off)")
    synth.add_argument("--out", type=Path, default=None,
                       help="output pair folder, replaced as a whole (default RUN/synthetic); a folder holding "
                            "other files is refused")
    _common(synth)

    run = commands.add_parser("run", help="everything: train, align, synthesize, segmenter (+ evaluate)",
                              epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--source", type=Path, help="pair folder")
    run.add_argument("--references", type=Path, help="folder of target reference images")
    run.add_argument("--test", type=Path, default=None, help="labelled target pair folder to evaluate on")
    run.add_argument("--out", type=Path, required=True, help="run folder")
    run.add_argument("--resume", action="store_true")
    _size_and_steps(run)
    _common(run)

    bench = commands.add_parser("bench", help="the pre-registered benchmark protocol (results.json + report.html)",
                                description="Runs bench/PROTOCOL.md: every method with one segmenter recipe, shared "
                                            "seeds, every reference set, paired cluster-bootstrap intervals.",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("benchmark", choices=("polyp", "pairs"),
                       help="polyp: Kvasir-SEG -> CVC-ClinicDB from --data; pairs: your own --source/--pool/--test")
    bench.add_argument("--data", type=Path, default=Path("../shared/data/polyp"),
                       help="polyp: folder with splits.json and the two datasets")
    bench.add_argument("--source", type=Path, help="pairs: labelled source pair folder (images/ + masks/)")
    bench.add_argument("--source-val", type=Path, default=None,
                       help="pairs: labelled source validation pair folder (optional; the recipe check)")
    bench.add_argument("--pool", type=Path, help="pairs: folder of target images the reference sets are drawn from")
    bench.add_argument("--test", type=Path, help="pairs: labelled target test pair folder (scores only)")
    bench.add_argument("--clusters", type=Path, default=None,
                       help="pairs: JSON {test image stem: cluster} of near-duplicates (default: one per image)")
    bench.add_argument("--preset", default="smoke", help="smoke | cpu | gpu")
    bench.add_argument("--out", type=Path, default=None, help="default bench/results/<preset>-<device>")
    bench.add_argument("--resume", action="store_true", help="continue a cut-off benchmark in --out")
    bench.add_argument("--workers", type=int, default=1,
                       help="processes that run the segmenter jobs and the alignment of each reference set, one "
                            "per GPU on CUDA (default 1: in this one)")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="change one setting, e.g. align.learning_rate=3e-5 (repeatable; marks an ablation)")
    bench.add_argument("--methods", default=None,
                       help="comma-separated subset of: " + ", ".join(BENCH_METHODS) + " (default: the protocol's)")
    bench.add_argument("--references", dest="reference_sets", default=None, metavar="K10_seed0,…",
                       help="comma-separated reference sets, e.g. K10_seed0 (polyp: keys of splits.json "
                            "target.references, default the preset's, else the protocol's; pairs: sets drawn from "
                            "--pool, default all)")
    bench.add_argument("--segmenter-seeds", type=int, default=None, metavar="N",
                       help="segmenter seeds per method and reference set (default: the preset's, else the "
                            "protocol's 3; the recipe check keeps the default); more seeds narrow only the seed part "
                            "of an interval")
    bench.add_argument("--reuse-stage1", type=Path, default=None, metavar="BENCH_OUT",
                       help="reuse the stage-1 generators of an earlier benchmark output folder (same data and settings)")
    _common(bench)

    seg = commands.add_parser("segmenter", help="train, evaluate, export or apply a segmenter")
    seg_commands = seg.add_subparsers(dest="segmenter_command", required=True)
    seg_train = seg_commands.add_parser("train", help="train on source pairs (+ synthetic pairs); exports it",
                                        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg_train.add_argument("--source", type=Path, required=True, help="real pair folder")
    seg_train.add_argument("--synthetic", type=Path, default=None, help="synthetic pair folder")
    seg_train.add_argument("--out", type=Path, required=True, help="segmenter folder (exported/ inside)")
    seg_train.add_argument("--arch", default=None, help="unet | segresnet | attentionunet | basicunet")
    seg_train.add_argument("--steps", type=int, default=None)
    seg_train.add_argument("--ratio", type=float, default=None, help="share of synthetic pairs per batch")
    seg_train.add_argument("--image-size", type=int, default=None)
    seg_train.add_argument("--channels", type=int, choices=(1, 3), default=None)
    seg_train.add_argument("--preset", default="default")
    seg_train.add_argument("--resume", action="store_true")
    _common(seg_train)
    seg_eval = seg_commands.add_parser("evaluate", help="mDice/mIoU per image at threshold 0.5",
                                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg_eval.add_argument("--model", type=Path, required=True, help="exported segmenter folder")
    seg_eval.add_argument("--data", type=Path, required=True, help="labelled pair folder")
    seg_eval.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    _common(seg_eval)
    seg_export = seg_commands.add_parser("export", help="export a trained segmenter checkpoint (model.safetensors "
                                         "+ model.json; also re-exports an old TorchScript export's training "
                                         "folder)", epilog=EXIT_CODES_HELP,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
    seg_export.add_argument("--run", type=Path, required=True,
                            help="segmenter folder from `segmenter train`, or a run folder")
    seg_export.add_argument("--out", type=Path, required=True, help="export folder")
    _common(seg_export)
    seg_predict = seg_commands.add_parser(
        "predict", help="segment an image or volume slice by slice into a 0/1 label file on the same voxel grid",
        description="Segments --volume with an exported segmenter, slice by slice along model.json's slice_axis\n"
                    "(z by default), and writes a uint8 0/1 label image with exactly the input's size, spacing,\n"
                    "origin and direction (written atomically). One progress event per slice.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg_predict.add_argument("--model", type=Path, required=True,
                             help="exported segmenter folder, or a folder holding one (SEG/exported, "
                                  "RUN/segmenter/exported)")
    seg_predict.add_argument("--volume", type=Path, required=True,
                             help="image to segment: .nrrd, .nii(.gz), .mha/.mhd, or a 2-D .png/.jpg/.tif")
    seg_predict.add_argument("--out", type=Path, required=True, help="label file: .nrrd, .nii.gz, .nii or .mha")
    _common(seg_predict)

    serve = commands.add_parser(
        "serve", help="browser front end: start runs, preview pairs in real Slicer views, apply the segmenter",
        description="Serves a web page (trame + trame-slicer; Slicer's views rendered on this machine and streamed)\n"
                    "from which runs are started, followed, cancelled and resumed, generated pairs previewed and a\n"
                    "trained segmenter applied to a volume. Training runs in `alignflow` subprocesses.\n"
                    "The page opens as http://HOST:PORT/?secret=TOKEN (printed at start; without --token a random\n"
                    "one is made). Off 127.0.0.1, --token is required.",
        epilog=SERVE_EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--root", type=Path, default=Path("."),
                       help="the only folder tree the page may browse and write into (default: here)")
    serve.add_argument("--runs", default="runs", help="folder for run folders, relative to --root (default runs)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: reach it through an SSH tunnel)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--token", default=os.environ.get("ALIGNFLOW_TOKEN"),
                       help="secret the page must present (?secret=TOKEN); required off localhost; default "
                            "$ALIGNFLOW_TOKEN (keeps it out of `ps`), else a random one, printed with the URL")
    serve.add_argument("--device", default="auto", help="the page's default device for runs")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest reference image accepted")
    serve.add_argument("--encoder", choices=("jpeg", "png"), default="jpeg",
                       help="how view images are streamed (png: lossless, more bandwidth)")
    return parser


def resolve_config(args: argparse.Namespace):
    """Preset + optional JSON file + flags → a RunConfig (the one place flags meet configs)."""
    from .config import RunConfig, from_dict, replace, to_dict
    from .presets import preset

    config = preset(getattr(args, "preset", "default"))
    if getattr(args, "config", None) is not None:
        try:
            overrides = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as error:
            raise AlignFlowError(f"cannot read configuration ({error})", args.config) from error
        merged = to_dict(config)
        for section, values in overrides.get("config", overrides).items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section].update(values)
            else:
                merged[section] = values
        config = from_dict(RunConfig, merged)
    data = config.data
    given = lambda name: getattr(args, name, None) is not None  # noqa: E731  (0 and negatives are checked, not ignored)
    if given("image_size"):
        data = replace(data, image_size_px=args.image_size)
    if given("channels"):
        data = replace(data, channels=args.channels)
    if given("slice_axis"):
        data = replace(data, slice_axis=args.slice_axis)
    changes: dict[str, Any] = {"data": data}
    if given("steps"):
        changes["image_generator"] = replace(config.image_generator, num_steps=args.steps)
    if given("mask_steps"):
        changes["mask_generator"] = replace(config.mask_generator, num_steps=args.mask_steps)
    if given("align_steps"):
        changes["align"] = replace(config.align, num_steps=args.align_steps)
    if given("segmenter_steps"):
        changes["segmenter"] = replace(config.segmenter, num_steps=args.segmenter_steps)
    if given("num"):
        changes["synthesis"] = replace(config.synthesis, num_pairs=args.num)
    config = replace(config, **changes)
    if given("seed"):  # shift every stage's seed, keeping the stages' streams distinct
        config = replace(config, **{name: replace(getattr(config, name), seed=getattr(config, name).seed + args.seed)
                                    for name in ("image_generator", "mask_generator", "align", "synthesis",
                                                 "segmenter")})
    validate_options(config, args)
    return config


# The config field each command-line option sets, so a bad value is reported under the name the user typed.
OPTION_FIELDS = {
    "image_size": "data.image_size_px", "channels": "data.channels", "slice_axis": "data.slice_axis",
    "steps": "image_generator.num_steps", "mask_steps": "mask_generator.num_steps",
    "align_steps": "align.num_steps", "segmenter_steps": "segmenter.num_steps", "num": "synthesis.num_pairs",
    "seed": "seed", "adapter": "align.adapter", "sampler": "synthesis.sampler.method",
    "sampler_steps": "synthesis.sampler.num_steps", "guidance": "synthesis.sampler.guidance_scale",
    "mask_source": "synthesis.mask_source", "start_time": "synthesis.start_time",
    "judge_keep_fraction": "synthesis.judge_keep_fraction", "arch": "segmenter.architecture",
    "ratio": "segmenter.synthetic_ratio",
}


def validate_options(config, args: argparse.Namespace, fields: dict[str, str] | None = None) -> None:
    """`config.validate`, naming the command-line option behind a bad field (exit 2, one line). `fields` changes
    what an option sets for one command (e.g. `segmenter train --steps`)."""
    from .config import validate

    try:
        validate(config)
    except UsageError as error:
        message = str(error)
        field = message.split(" = ")[0]
        for option, path in {**OPTION_FIELDS, **(fields or {})}.items():
            value = getattr(args, option, None)
            if value is not None and (field == path or (path == "seed" and field.endswith(".seed"))):
                raise UsageError(f"--{option.replace('_', '-')} {value}: {message}") from None
        raise


def _command(args: argparse.Namespace, on_event) -> dict[str, Any]:
    """Run one command; returns the payload of the final `done` event."""
    from . import pipeline
    from .config import replace
    from .device import select_device, set_compile
    from .run_folder import RunFolder

    device = select_device(args.device)
    set_compile(getattr(args, "compile", False))
    if launched_by_torchrun():
        from . import distributed

        device = distributed.init_from_environment(device)
        on_event({"event": "log", "message": f"torchrun: {distributed.world().size} processes "
                                             f"({distributed.world().backend})"})
    on_event({"event": "log", "message": f"device: {device}"})

    if args.command == "demo":
        from .demo import run_demo

        metrics = run_demo(args.out, device, resume=args.resume, on_event=on_event)
        on_event({"event": "log", "message": "\n" + metrics["table"]})
        return {"report": str(Path(args.out) / "run" / "report.html"), "metrics": {
            k: v for k, v in metrics.items() if k != "table"}}

    if args.command in ("train", "run"):
        inputs = {"source": str(args.source) if args.source else None}
        if args.command == "run":
            inputs.update(references=str(args.references) if args.references else None,
                          test=str(args.test) if args.test else None)
        if not args.resume and args.source is None:
            raise AlignFlowError("--source is required (or --resume an existing run)")
        run, _, stored_inputs = pipeline.start_run(args.out, resolve_config(args), inputs, args.resume)
        if args.command == "train":
            pipeline.train_generators(run, device, args.resume, on_event)
            return {"run": str(run.root)}
        references = stored_inputs.get("references")
        if not references:
            raise AlignFlowError("--references is required")
        test = stored_inputs.get("test")
        results = pipeline.run_all(run, Path(references), device, Path(test) if test else None, args.resume,
                                   on_event)
        return {"run": str(run.root), **results}

    if args.command == "align":
        run = RunFolder(args.run)
        config, inputs = run.load_config()
        if args.align_steps is not None or args.adapter:
            align_config = config.align
            if args.align_steps is not None:
                align_config = replace(align_config, num_steps=args.align_steps)
            if args.adapter:
                align_config = replace(align_config, adapter=args.adapter)
            config = replace(config, align=align_config)
            validate_options(config, args)
            run.save_config(config, inputs)
        run.update_inputs(references=str(args.references))
        summary = pipeline.align(run, args.references, device, args.resume, on_event)
        return {"run": str(run.root), **summary}

    if args.command == "synthesize":
        run = RunFolder(args.run)
        config, _ = run.load_config()
        synthesis = config.synthesis
        sampler = synthesis.sampler
        if args.sampler:
            sampler = replace(sampler, method=args.sampler)
        if args.sampler_steps is not None:
            sampler = replace(sampler, num_steps=args.sampler_steps)
        if args.guidance is not None:
            sampler = replace(sampler, guidance_scale=args.guidance)
        synthesis = replace(synthesis, sampler=sampler)
        if args.num is not None:
            synthesis = replace(synthesis, num_pairs=args.num)
        if args.mask_source:
            synthesis = replace(synthesis, mask_source=args.mask_source)
        if args.start_time is not None:
            synthesis = replace(synthesis, start_time=args.start_time)
        if args.judge_keep_fraction is not None:
            synthesis = replace(synthesis, judge_keep_fraction=args.judge_keep_fraction)
        if args.seed is not None:
            synthesis = replace(synthesis, seed=args.seed)
        validate_options(replace(config, synthesis=synthesis), args)
        out = pipeline.synthesize(run, device, synthesis, args.out, args.generator, on_event)
        return {"pairs": str(out)}

    if args.command == "bench":
        from .bench.report import method_rows, paired_rows, win_rows

        out = args.out or Path("bench/results") / f"{args.preset}-{device.type}"
        methods, reference_sets = (tuple(part.strip() for part in text.split(",") if part.strip()) if text else None
                                   for text in (args.methods, args.reference_sets))
        if args.benchmark == "pairs":
            from .bench.pairs import run_pairs_benchmark

            for option in ("source", "pool", "test"):
                if getattr(args, option) is None:
                    raise UsageError(f"bench pairs needs --{option}")
            results = run_pairs_benchmark(args.source, args.pool, args.test, out, args.preset, device, on_event,
                                          args.source_val, args.clusters, tuple(args.overrides), methods, args.resume,
                                          args.workers, args.segmenter_seeds, reference_sets, args.reuse_stage1)
        else:
            from .bench.polyp import run_polyp_benchmark

            results = run_polyp_benchmark(args.data, out, args.preset, device, on_event, tuple(args.overrides),
                                          methods, args.reuse_stage1, reference_sets, args.resume, args.workers,
                                          args.segmenter_seeds)
        rows = method_rows(results) + paired_rows(results) + win_rows(results)
        on_event({"event": "log", "message": "\n" + "\n".join(" | ".join(str(c) for c in row) for row in rows)})
        return {"results": str(Path(out) / "results.json"), "wall_time_s": results["wall_time_s"]}

    if args.command == "segmenter":
        from . import segmenter_commands

        return segmenter_commands.dispatch(args, device, on_event)
    raise AlignFlowError(f"unknown command {args.command!r}")


def _install_signal_handlers() -> None:
    """SIGTERM (the Slicer module's Cancel) behaves like Ctrl-C: unwind, keep the last atomic checkpoint."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _options_error(args: argparse.Namespace) -> AlignFlowError | None:
    """Check the options that build a configuration before anything touches the disk."""
    try:
        if args.command in ("train", "run") and not getattr(args, "resume", False):
            resolve_config(args)
        elif args.command == "segmenter" and args.segmenter_command == "train":
            segmenter_train_config(args)
        if args.command == "bench" and args.segmenter_seeds is not None and not 1 <= args.segmenter_seeds <= 1000:
            raise UsageError(f"--segmenter-seeds {args.segmenter_seeds}: must be an integer from 1 to 1000")
        if args.command == "bench" and not 1 <= args.workers <= 1024:
            raise UsageError(f"--workers {args.workers}: must be an integer from 1 to 1024")
        _check_output(args)
    except AlignFlowError as error:
        return error
    return None


SEGMENTER_OPTION_FIELDS = {"steps": "segmenter.num_steps"}


def segmenter_train_config(args: argparse.Namespace):
    """`segmenter train`'s configuration (there --steps is the segmenter's), validated."""
    from .config import replace

    config = resolve_config(argparse.Namespace(**{**vars(args), "steps": None}))
    segmenter = config.segmenter
    if args.arch:
        segmenter = replace(segmenter, architecture=args.arch)
    if args.steps is not None:
        segmenter = replace(segmenter, num_steps=args.steps)
    if args.ratio is not None:
        segmenter = replace(segmenter, synthetic_ratio=args.ratio)
    config = replace(config, segmenter=segmenter)
    validate_options(config, args, SEGMENTER_OPTION_FIELDS)
    return config


INPUT_OPTIONS = ("source", "references", "test", "synthetic", "data", "pool")  # folders read as data sets
# What a folder's config.json says about the command that made it: a run (train/run/demo/bench's run) or a
# `segmenter train` folder.
FOLDER_KIND = {"train": "run", "run": "run", "demo": None, "bench": None, "segmenter train": "segmenter"}


def _folder_kind(folder: Path) -> str | None:
    """What wrote `folder`: "run", "segmenter", "synthetic" (a pair folder of `synthesize`) or None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if isinstance(manifest, dict) and "generator" in manifest and "seeds" in manifest:
            return "synthetic"
    except (OSError, ValueError):
        pass
    try:
        stored = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(stored, dict) and "config" in stored and "inputs" in stored:
        return "run"
    if isinstance(stored, dict) and "segmenter" in stored and "source" in stored:
        return "segmenter"
    return None


def _check_output(args: argparse.Namespace) -> None:
    """Where this command writes: not a plain file, writable, outside every input folder, and not another
    command's folder. Raises UsageError (exit 2) naming the option."""
    out = getattr(args, "out", None)
    if out is None:
        return
    command = args.command + (f" {args.segmenter_command}" if args.command == "segmenter" else "")
    writes_file = command in ("segmenter evaluate", "segmenter predict")
    out = Path(out)
    if out.exists() and not writes_file and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is a file; choose a folder")
    if writes_file and out.is_dir():
        raise UsageError(f"--out {out}: is a folder; name the file to write")
    existing = next((p for p in [out, *out.absolute().parents] if p.exists()), None)
    if existing is not None and not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise UsageError(f"--out {out}: {existing} is not writable")
    resolved = out.resolve()
    for option in INPUT_OPTIONS:
        value = getattr(args, option, None)
        if isinstance(value, Path) and value.exists():
            source = value.resolve()
            if resolved == source or source in resolved.parents:
                raise UsageError(f"--out {out}: is inside the --{option} folder {value}; write outside the inputs")
    if command == "synthesize" and out.is_dir() and any(out.iterdir()) and _folder_kind(out) != "synthetic":
        raise UsageError(f"--out {out}: holds files that `alignflow synthesize` did not write, and synthesis replaces "
                         "the whole folder; choose a new or empty folder")
    expected = FOLDER_KIND.get(command)
    found = _folder_kind(out) if out.is_dir() else None
    if found is not None and expected is not None and found != expected:
        made_by = "`alignflow train`/`run`" if found == "run" else "`alignflow segmenter train`"
        raise UsageError(f"--out {out}: is a folder made by {made_by}; choose another folder")


def _locked_folder(args: argparse.Namespace, run_root: Path | None) -> Path | None:
    """The folder this command writes, locked for its duration (one writer per run folder)."""
    if args.command == "segmenter":
        return Path(args.out) if getattr(args, "segmenter_command", None) == "train" else None
    if args.command == "bench":
        return Path(args.out) if args.out else None
    return None if run_root is None else Path(run_root)


def _internal_error(error: BaseException, log_writer, on_event) -> int:
    message = f"internal error: {type(error).__name__}: {error}"
    if log_writer is not None:
        log_writer({"event": "traceback", "message": traceback.format_exc()})
    on_event({"event": "error", "message": message.splitlines()[0], "exit_code": 1})
    return 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


# The commands that train data-parallel under torchrun; the others sample or score in one process.
DISTRIBUTED_COMMANDS = ("train", "align", "run", "segmenter train")


def _other_rank_sink(event: dict) -> None:
    """Ranks other than 0 under torchrun: rank 0 reports progress and writes the log; they print only errors."""
    if event.get("event") == "error":
        print(f"rank {os.environ.get('RANK')}: {event.get('message')}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    """The web page runs until Ctrl-C; its errors are one line on stderr, like every command's."""
    from .serve.security import DEFAULT_MAX_UPLOAD_BYTES, ServedRoot, check_bind, new_token

    try:
        check_bind(args.host, args.token)
        served = ServedRoot(args.root)
        served.resolve(args.runs)
        try:
            from .serve.app import serve
        except ImportError as error:
            raise UsageError(f"`alignflow serve` needs trame-slicer ({error.name or error} is missing): "
                             "pip install trame-slicer slicer-core") from error
    except AlignFlowError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    token = args.token or new_token()  # even on 127.0.0.1: other users of this machine reach that address too
    print(f"AlignFlow page: http://{args.host}:{args.port}/?secret={token}", flush=True)
    max_bytes = int(args.max_upload_mb * 1e6) if args.max_upload_mb > 0 else DEFAULT_MAX_UPLOAD_BYTES
    try:
        serve(served, args.host, args.port, token, runs=args.runs, device=args.device,
              max_upload_bytes=max_bytes, encoder=args.encoder)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":  # a server, not a job: no progress events, run folder, lock or torchrun
        return _serve(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    other_rank = launched_by_torchrun() and not writes_files()
    sinks = [_other_rank_sink if other_rank else JsonlPrinter() if args.progress == "jsonl" else ProgressBar()]
    run_root = getattr(args, "out", None) if args.command in ("train", "run") else getattr(args, "run", None)
    if args.command == "demo":
        run_root = Path(args.out) / "run"
    command = args.command + (f" {args.segmenter_command}" if args.command == "segmenter" else "")
    if launched_by_torchrun() and command not in DISTRIBUTED_COMMANDS:
        error = UsageError(f"`alignflow {command}` runs in one process; start it without torchrun (torchrun runs "
                           f"{', '.join(DISTRIBUTED_COMMANDS)})")
        sinks[0]({"event": "error", "message": str(error), "exit_code": error.exit_code})
        return error.exit_code
    early = _options_error(args)
    if early is not None:  # a bad option value: one line, exit 2, and no run folder is created or touched
        sinks[0]({"event": "error", "message": str(early), "exit_code": early.exit_code})
        return early.exit_code
    if args.command in ("align", "synthesize") and run_root is not None and not Path(run_root).is_dir():
        run_root = None  # a mistyped --run is reported by the command, never created by its log or lock
    log_writer = None
    if run_root is not None and args.command != "segmenter" and not other_rank:
        try:
            log_writer = JsonlWriter(Path(run_root) / "events.jsonl")
        except OSError as error:  # e.g. a parent that cannot hold folders
            message = f"{run_root}: cannot be created or written ({error.strerror or error})"
            sinks[0]({"event": "error", "message": message, "exit_code": UsageError.exit_code})
            return UsageError.exit_code
        sinks.append(log_writer)
    on_event = EventFanout(*sinks)
    _install_signal_handlers()
    watcher = StopWatcher.from_environment()
    if watcher is None and launched_by_torchrun():
        # torchrun starts each rank in a session of its own: if torchrun itself is killed, no signal reaches the
        # ranks, so each watches it and stops cleanly (exit 130) instead of training on, orphaned, holding the lock.
        watcher = StopWatcher(parent_pid=os.getppid())
    lock = None
    try:
        if watcher is not None:
            watcher.start()
        lock_dir = None if other_rank else _locked_folder(args, run_root)  # rank 0 holds it for the job
        if lock_dir is not None:
            lock = RunFolderLock(lock_dir).acquire()
        payload = _command(args, on_event)
        on_event({"event": "done", "message": "done", **payload})
        return 0
    except KeyboardInterrupt:
        why = watcher.reason if watcher is not None and watcher.reason else "cancelled"
        error = CancelledByUser(f"{why}; the run folder is consistent, continue with --resume")
        on_event({"event": "error", "message": str(error), "exit_code": error.exit_code})
        return error.exit_code
    except AlignFlowError as error:
        on_event({"event": "error", "message": str(error), "exit_code": error.exit_code})
        return error.exit_code
    except OSError as error:
        if error.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return _internal_error(error, log_writer, on_event)
        # A full disk is not a bug: every write is atomic, so the last checkpoint is intact.
        failed = RunFolderError(f"no space left on the device ({error.filename or 'while writing'}); free some "
                                "space and continue with --resume")
        on_event({"event": "error", "message": str(failed), "exit_code": failed.exit_code})
        return failed.exit_code
    except Exception as error:  # a bug: one line for the user, the traceback in the run log
        return _internal_error(error, log_writer, on_event)
    finally:
        if watcher is not None:
            watcher.stop()
        if lock is not None:
            lock.release()
        if log_writer is not None:
            log_writer.close()
        if launched_by_torchrun() and "torch.distributed" in sys.modules:
            from . import distributed

            distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
