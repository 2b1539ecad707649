"""Training-loop overhead: one stage-1 step of `train_flow_model` vs the bare forward+backward of the same network
on the same batch (DESIGN.md §5 target: ratio ≤ 1.15). Both are timed in one process, interleaved, so machine noise
hits both alike. Prints and saves JSON.

    python bench/step_overhead.py [--device auto] [--model small|default] [--size 64] [--batch 16] [--steps 30]
                                  [--compile] [--out bench/results/...]

`--model default` times the `default` preset's image generator (the GPU preset's); `small` the library's smallest.
`--compile` compiles both (the loop as the CLI's `--compile` does); compile time falls before the timed blocks.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from AlignFlowLib.config import ImageGeneratorConfig, replace
from AlignFlowLib.device import autocast, compiled, select_device, set_compile
from AlignFlowLib.models.velocity import build_velocity_unet
from AlignFlowLib.train.generators import train_image_generator
from AlignFlowLib.config import DataConfig
from AlignFlowLib.presets import DEFAULT
from timing import random_pairs, sync, timed_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per block (a multiple of 10)")
    parser.add_argument("--model", choices=("small", "default"), default="small")
    parser.add_argument("--compile", action="store_true", help="torch.compile the bare step and the loop")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.steps < 10 or args.steps % 10:
        parser.error("--steps must be a positive multiple of 10 (the loop reports every 10 steps)")
    device = select_device(args.device)
    set_compile(args.compile)
    base = DEFAULT.image_generator if args.model == "default" else ImageGeneratorConfig()
    config = replace(base, batch_size=args.batch, checkpoint_every_steps=10**9)
    pairs = random_pairs(64, args.size)

    # Bare: forward + backward + optimizer step of the same network on a fixed batch.
    model = build_velocity_unet(3, 1, config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    x = pairs.images[: args.batch].to(device)
    mask = pairs.masks[: args.batch].to(device)
    t = torch.rand(args.batch, device=device)
    net = compiled(model)

    def bare_step() -> None:
        with autocast(device):
            loss = net(x, t, mask).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    bare_times, loop_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(3):  # interleave: bare block, loop block, three times
            for _ in range(2):
                bare_step()
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                bare_step()
            sync(device)
            bare_times.append((time.perf_counter() - start) / args.steps)

            # The loop's steady state, from its own progress events (construction and the final checkpoint excluded).
            loop_config = replace(config, num_steps=args.steps + 10)
            path = Path(tmp) / f"run{round_index}.pt"
            loop = timed_loop(lambda on_event: train_image_generator(
                pairs, loop_config, DataConfig(image_size_px=args.size), device, path, on_event=on_event))
            loop_times.append(loop["step_ms"] / 1000)
    bare, loop = statistics.median(bare_times), statistics.median(loop_times)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"CPU {platform.machine()} ({torch.get_num_threads()} threads)",
              "model": args.model, "compiled": args.compile, "image_size_px": args.size, "batch_size": args.batch,
              "steps_per_block": args.steps,
              "bare_step_s": bare, "loop_step_s": loop, "ratio": loop / bare,
              "note": "loop: steady state between its progress events at step 10 and the last step (construction and "
                      "the final checkpoint excluded); bare: fwd + bwd + AdamW on one fixed batch"}
    print(json.dumps(result, indent=2))
    out = args.out or Path("bench/results") / f"step_overhead{'-compiled' if args.compile else ''}-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
