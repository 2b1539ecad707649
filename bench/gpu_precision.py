"""Does bf16 autocast, and does torch.compile, make the training and sampling steps faster? One process, every
variant of a workload timed back to back on the same warm device, so noise hits them alike.

Workloads are the `default` preset's networks (the GPU preset) at its sizes: an image-generator training step
(fwd + bwd + AdamW, batch 32, 128 px), a mask-generator step, a segmenter step (channels-last, BCE + soft Dice,
as its loop trains; the lease of 2026-11-26 measured an earlier version: default memory format, BCE only), and a
no-grad sampler evaluation at synthesis batch size (64). Variants: fp32 (PyTorch's defaults: TF32 convolutions, full fp32 matmuls), bf16 autocast
(what the library uses on CUDA), bf16 autocast + `torch.compile` (default mode; its compile time is reported apart),
and on request bf16 + channels-last for the generators and the sampler (cuDNN's NCHW<->NHWC conversions were 21 % of
the compiled stage-1 loop's kernel time in the lease of 2026-11-26c; the segmenter is channels-last in every variant).
Results are written after every measurement, so a run cut off by its time limit keeps what it measured.

    python bench/gpu_precision.py [--device cuda] [--steps 20] [--skip-compile] [--out bench/results/...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from AlignFlowLib.device import select_device  # noqa: E402
from AlignFlowLib.models.velocity import build_velocity_unet  # noqa: E402
from AlignFlowLib.presets import DEFAULT  # noqa: E402
from AlignFlowLib.segmenter.model import build_segmenter  # noqa: E402
from AlignFlowLib.segmenter.train import segmentation_loss  # noqa: E402
from timing import sync  # noqa: E402

SIZE = DEFAULT.data.image_size_px
BATCH_DIVISOR = 1  # --batch-divisor: a quick check of the script on a CPU


def _precision(device: torch.device, variant: str):
    if variant == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _layout(variant: str) -> torch.memory_format:
    return torch.channels_last if variant.endswith("channels_last") else torch.contiguous_format


def _workloads(device: torch.device) -> dict[str, Callable[[str], Callable[[], None]]]:
    """name -> (variant -> one step closure). Every closure owns a fresh model built with seed 0."""
    g = torch.Generator().manual_seed(0)

    def flow_step(data_channels: int, condition_channels: int, config, batch: int):
        def make(variant: str) -> Callable[[], None]:
            torch.manual_seed(0)
            fmt = _layout(variant)
            model = build_velocity_unet(data_channels, condition_channels, config).to(device).to(memory_format=fmt)
            rows = max(1, batch // BATCH_DIVISOR)
            net = torch.compile(model) if variant == "bf16+compile" else model
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x = (torch.rand(rows, data_channels, SIZE, SIZE, generator=g) * 2 - 1).to(device).contiguous(
                memory_format=fmt)
            mask = (torch.rand(rows, 1, SIZE, SIZE, generator=g) > 0.5).float().to(device).contiguous(
                memory_format=fmt) if condition_channels else None
            t = torch.rand(rows, generator=g).to(device)

            def step() -> None:
                with _precision(device, variant):
                    out = net(x, t, mask)
                loss = out.float().square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            return step
        return make

    def segmenter_step(variant: str) -> Callable[[], None]:
        """As the real loop runs it: channels-last, BCE + soft Dice."""
        torch.manual_seed(0)
        model = build_segmenter("unet", 3).to(device).to(memory_format=torch.channels_last)
        net = torch.compile(model) if variant == "bf16+compile" else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        batch = max(1, DEFAULT.segmenter.batch_size // BATCH_DIVISOR)
        x = (torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1).to(device).contiguous(
            memory_format=torch.channels_last)
        y = (torch.rand(batch, 1, SIZE, SIZE, generator=g) > 0.5).float().to(device)

        def step() -> None:
            with _precision(device, variant):
                logits = net(x)
            loss = segmentation_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def sampler_eval(variant: str) -> Callable[[], None]:
        torch.manual_seed(0)
        fmt = _layout(variant)
        model = build_velocity_unet(3, 1, DEFAULT.image_generator).to(device).to(memory_format=fmt).eval()
        net = torch.compile(model) if variant == "bf16+compile" else model
        batch = max(1, DEFAULT.synthesis.batch_size // BATCH_DIVISOR)
        x = torch.randn(batch, 3, SIZE, SIZE, generator=g).to(device).contiguous(memory_format=fmt)
        mask = (torch.rand(batch, 1, SIZE, SIZE, generator=g) > 0.5).float().to(device).contiguous(memory_format=fmt)
        t = torch.full((batch,), 0.5).to(device)

        def step() -> None:
            with torch.no_grad(), _precision(device, variant):
                net(x, t, mask)
        return step

    return {
        "image_generator_train_step": flow_step(3, 1, DEFAULT.image_generator, DEFAULT.image_generator.batch_size),
        "mask_generator_train_step": flow_step(1, 0, DEFAULT.mask_generator, DEFAULT.mask_generator.batch_size),
        "segmenter_train_step": segmenter_step,
        "sampler_eval_batch64": sampler_eval,
    }


def _time(step: Callable[[], None], device: torch.device, steps: int, warmup: int) -> tuple[float, float]:
    """(seconds of the warm-up steps, which hold any compile time; median seconds per step over three blocks)."""
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm = time.perf_counter() - started
    blocks = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        blocks.append((time.perf_counter() - start) / steps)
    return warm, statistics.median(blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block (three blocks)")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--only", default=None, help="comma list of workloads (default: all)")
    parser.add_argument("--variants", default="fp32,bf16,bf16+compile",
                        help="comma list of fp32, bf16, bf16+compile, bf16+channels_last")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batch-divisor", type=int, default=1, help="smaller batches (to check the script on a CPU)")
    args = parser.parse_args()
    global BATCH_DIVISOR
    BATCH_DIVISOR = args.batch_divisor
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}"
    out = args.out or REPO / "bench" / "results" / f"gpu_precision-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": name, "torch": torch.__version__, "size_px": SIZE, "steps_per_block": args.steps,
              "batch_divisor": BATCH_DIVISOR,
              "workloads": {}, "note": "median s/step of three timed blocks after warm-up; compile time is the "
                                       "warm-up (3 steps) of the compiled variant"}
    workloads = _workloads(device)
    if args.only:
        workloads = {name: workloads[name] for name in args.only.split(",")}
    variants = [v for v in args.variants.split(",") if not (args.skip_compile and v == "bf16+compile")]
    # Eager variants of every workload first, so a cut-off run still has the bf16 answer everywhere.
    # Compiled variants then from the cheapest compile to the dearest.
    eager = [v for v in variants if v != "bf16+compile"]
    for phase, order in ((eager, list(workloads)), ([v for v in variants if v not in eager], list(reversed(workloads)))):
        for workload in order:
            make = workloads[workload]
            for variant in phase:
                warm, per_step = _time(make(variant), device, args.steps, 3)
                entry = result["workloads"].setdefault(workload, {})
                entry[variant] = {"s_per_step": per_step, "warmup_s": round(warm, 2)}
                if "fp32" in entry:
                    entry[variant]["speedup_vs_fp32"] = round(entry["fp32"]["s_per_step"] / per_step, 3)
                if variant in ("bf16+compile", "bf16+channels_last") and "bf16" in entry:
                    entry[variant]["speedup_vs_bf16"] = round(entry["bf16"]["s_per_step"] / per_step, 3)
                print(f"{workload:>28} {variant:>13}: {per_step * 1e3:8.2f} ms/step (warm-up {warm:.1f} s)",
                      flush=True)
                out.write_text(json.dumps(result, indent=2))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
