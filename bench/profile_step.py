"""Where does a stage-1 training step's time go beyond the bare forward + backward? Profiles the real loop
(`train_image_generator`, the `default` preset's network and batch) with torch.profiler over ten steps after
warm-up (and compilation, with `--compile`), and writes the operator table sorted by host time and by device time,
plus a Chrome trace to open in chrome://tracing or Perfetto.

    python bench/profile_step.py [--device cuda] [--size 128] [--batch 32] [--compile] [--out-dir bench/results/...]

A host-side operator that waits for the device (cudaStreamSynchronize, cudaMemcpy without Async, .item()) shows up
as a long host entry with little device time; the step-overhead ratio (bench/step_overhead.py) says whether to look.
The window is marked at optimiser steps, so it runs from after step 20's optimiser step to the end of step 30's and
holds one report: step 20's read of the smoothed loss from the device, a wait by design.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity, profile, schedule

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from AlignFlowLib.config import replace  # noqa: E402
from AlignFlowLib.device import select_device, set_compile  # noqa: E402
from AlignFlowLib.presets import DEFAULT  # noqa: E402
from AlignFlowLib.train.generators import train_image_generator  # noqa: E402
from timing import random_pairs  # noqa: E402

WAIT, WARMUP, ACTIVE = 15, 5, 10  # steps: skipped, profiled but discarded, recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=DEFAULT.data.image_size_px)
    parser.add_argument("--batch", type=int, default=DEFAULT.image_generator.batch_size)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    device = select_device(args.device)
    set_compile(args.compile)
    pairs = random_pairs(128, args.size)
    config = replace(DEFAULT.image_generator, batch_size=args.batch, num_steps=WAIT + WARMUP + ACTIVE,
                     checkpoint_every_steps=10**9)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE)) as profiler:
        # The loop has no per-step hook of its own; every optimiser step marks the end of one.
        handle = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: profiler.step())
        try:
            with tempfile.TemporaryDirectory() as tmp:
                train_image_generator(pairs, config, replace(DEFAULT.data, image_size_px=args.size), device,
                                      Path(tmp) / "image.pt")
        finally:
            handle.remove()
    tag = f"{device.type}{'-compiled' if args.compile else ''}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    averages = profiler.key_averages()
    tables = [f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, torch "
              f"{torch.__version__}, {ACTIVE} steps of the default image generator, batch {args.batch}, {args.size} px"
              f"{', compiled' if args.compile else ''}", "", "by host time:",
              averages.table(sort_by="self_cpu_time_total", row_limit=30)]
    if device.type == "cuda":
        tables += ["", "by device time:", averages.table(sort_by="self_cuda_time_total", row_limit=30)]
    (args.out_dir / f"profile_step-{tag}.txt").write_text("\n".join(tables))
    profiler.export_chrome_trace(str(args.out_dir / f"profile_step-{tag}.trace.json"))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
