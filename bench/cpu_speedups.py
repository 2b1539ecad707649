"""What the CPU benchmark preset's speed choices buy, measured in one process with the variants interleaved so that
machine noise hits them alike: bf16 autocast vs fp32 for one stage-1 generator step, channels-last vs the default
layout for one bf16 generator step and for one segmenter step (all at the preset's 96 px, batch 16). Prints and saves
JSON.

    python bench/cpu_speedups.py [--size 96] [--batch 16] [--repeats 6] [--out bench/results/cpu_speedups.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from AlignFlowLib.bench.protocol import BENCH_PRESETS
from AlignFlowLib.device import cpu_bf16_supported
from AlignFlowLib.models.velocity import build_velocity_unet
from AlignFlowLib.segmenter.model import build_segmenter
from AlignFlowLib.segmenter.train import segmentation_loss


def _seconds(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def generator_step(bf16: bool, size: int, batch: int, channels_last: bool = False):
    config = BENCH_PRESETS["cpu"].run.image_generator
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_velocity_unet(3, 1, config).to(memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    x, t, mask = torch.randn(batch, 3, size, size), torch.rand(batch), torch.rand(batch, 1, size, size).round()
    x, mask = x.contiguous(memory_format=fmt), mask.contiguous(memory_format=fmt)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = (model(x, t, mask).float() - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def segmenter_step(channels_last: bool, size: int, batch: int):
    model = build_segmenter("unet", 3)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()

    def step() -> None:
        loss = segmentation_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_speedups.json"))
    args = parser.parse_args()
    variants = {"generator_fp32": generator_step(False, args.size, args.batch),
                "segmenter_default_layout": segmenter_step(False, args.size, args.batch),
                "segmenter_channels_last": segmenter_step(True, args.size, args.batch)}
    if cpu_bf16_supported():
        variants["generator_bf16"] = generator_step(True, args.size, args.batch)
        variants["generator_bf16_channels_last"] = generator_step(True, args.size, args.batch, channels_last=True)
    for step in variants.values():
        step()  # warm-up: oneDNN picks its kernels on the first call
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved rounds
        for name, step in variants.items():
            times[name].append(_seconds(step))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {"device": f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
              "cpu_bf16_supported": cpu_bf16_supported(), "size_px": args.size, "batch": args.batch,
              "median_step_s": median,
              "segmenter_speedup_channels_last": median["segmenter_default_layout"] / median["segmenter_channels_last"]}
    if "generator_bf16" in median:
        result["generator_speedup_bf16"] = median["generator_fp32"] / median["generator_bf16"]
        result["generator_bf16_speedup_channels_last"] = (median["generator_bf16"]
                                                          / median["generator_bf16_channels_last"])
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
