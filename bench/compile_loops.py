"""Does `--compile` pay off in the library's own loops? Each loop (image generator, mask generator, synthesis
sampler) runs eager and then compiled, back to back in one process on the same warm device, with the `default`
preset's networks and batch sizes (the GPU preset's) on random data. The segmenter's loops run eager only, since
`--compile` leaves them eager (two recipes: the default, and the benchmark protocol's strong augmentation). The mask
generator's loop, which `--compile` also leaves eager, is still timed both ways, to revisit that choice. Prints
and saves JSON after every workload, so a run cut off by its time limit keeps what it measured.

Per training loop: the steady-state step time between the loop's own progress events (at step 10 and the last
step), the time to its first progress event (construction, first steps, and compilation when compiled), and the
number of steps after which compiling has paid for itself. Synthesis: the first call (compiling) and a second call of
`generate_images` on the same masks.

    python bench/compile_loops.py [--device cuda] [--steps 60] [--size 128] [--batch-divisor 1]
                                  [--only image_generator,...] [--backend inductor] [--out bench/results/...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from AlignFlowLib.config import replace  # noqa: E402
from AlignFlowLib.device import select_device, set_compile  # noqa: E402
from AlignFlowLib.presets import DEFAULT  # noqa: E402
from AlignFlowLib.segmenter.train import train_segmenter  # noqa: E402
from AlignFlowLib.synthesis import generate_images  # noqa: E402
from AlignFlowLib.train.generators import train_image_generator, train_mask_generator  # noqa: E402
from timing import random_pairs, sync, timed_loop  # noqa: E402

WORKLOADS = ("image_generator", "mask_generator", "segmenter", "segmenter_strong_augment", "synthesis")


def _loops(device: torch.device, size: int, steps: int, divisor: int, tmp: Path) -> dict[str, Callable[[], dict]]:
    pairs = random_pairs(128, size)
    data = replace(DEFAULT.data, image_size_px=size)
    never = 10**9  # no checkpoints inside the timed steps

    def image_generator() -> dict:
        config = replace(DEFAULT.image_generator, num_steps=steps, checkpoint_every_steps=never,
                         batch_size=max(2, DEFAULT.image_generator.batch_size // divisor))
        return timed_loop(lambda on_event: train_image_generator(pairs, config, data, device, tmp / "image.pt",
                                                                  on_event=on_event))

    def mask_generator() -> dict:
        config = replace(DEFAULT.mask_generator, num_steps=steps, checkpoint_every_steps=never,
                         batch_size=max(2, DEFAULT.mask_generator.batch_size // divisor))
        # `--compile` leaves this loop eager (no measurable gain so far); the compiled mode still times it compiled
        return timed_loop(lambda on_event: train_mask_generator(pairs, config, device, tmp / "mask.pt",
                                                                 on_event=on_event, compile_loop=True))

    def segmenter(strong_augment: bool = False) -> dict:
        config = replace(DEFAULT.segmenter, num_steps=steps, batch_size=max(2, DEFAULT.segmenter.batch_size // divisor),
                         strong_augment=strong_augment)
        return timed_loop(lambda on_event: train_segmenter(pairs.images, pairs.masks, config, device,
                                                            on_event=on_event))

    def synthesis() -> dict:
        torch.manual_seed(0)
        from AlignFlowLib.models.velocity import build_velocity_unet

        model = build_velocity_unet(3, 1, DEFAULT.image_generator).to(device)
        batch = max(2, DEFAULT.synthesis.batch_size // divisor)
        masks, seeds = pairs.masks[:2 * batch], list(range(2 * batch))
        times = []
        for _ in range(2):
            sync(device)
            start = time.perf_counter()
            generate_images(model, masks, seeds, DEFAULT.synthesis.sampler, device, batch_size=batch)
            sync(device)
            times.append(time.perf_counter() - start)
        return {"first_call_s": times[0], "second_call_s": times[1], "pairs_per_call": len(masks),
                "sampler_steps": DEFAULT.synthesis.sampler.num_steps, "batch_size": batch}

    return {"image_generator": image_generator, "mask_generator": mask_generator, "segmenter": segmenter,
            # the benchmark protocol's recipe: the classic per-sample colour, blur and noise augmentation on top
            "segmenter_strong_augment": lambda: segmenter(strong_augment=True), "synthesis": synthesis}


def _compare(eager: dict, compiled: dict) -> dict:
    if "step_ms" in eager:
        saved_ms = eager["step_ms"] - compiled["step_ms"]
        extra_s = compiled["to_first_report_s"] - eager["to_first_report_s"]
        return {"speedup": eager["step_ms"] / compiled["step_ms"], "compile_extra_s": extra_s,
                "break_even_steps": round(1000 * extra_s / saved_ms) if saved_ms > 0 else None}
    return {"speedup": eager["second_call_s"] / compiled["second_call_s"],
            "compile_extra_s": compiled["first_call_s"] - eager["first_call_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=DEFAULT.data.image_size_px)
    parser.add_argument("--steps", type=int, default=60, help="steps per training loop (a multiple of 10, ≥ 20)")
    parser.add_argument("--batch-divisor", type=int, default=1, help="smaller batches, for a quick check on a CPU")
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.steps < 20 or args.steps % 10:
        parser.error("--steps must be a multiple of 10 and at least 20 (the loops report every 10 steps)")
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    device = select_device(args.device)
    out = args.out or REPO / "bench" / "results" / f"compile_loops-{device.type}.json"
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"CPU {platform.machine()} ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "backend": args.backend, "image_size_px": args.size, "steps": args.steps,
        "batch_divisor": args.batch_divisor, "preset": "default", "workloads": {},
        "note": "eager then compiled in one process; step_ms: steady state between the loop's progress events; "
                "to_first_report_s: construction + first steps (+ compilation); the library's precision in both (on "
                "CUDA bf16 for the generators and the sampler; the segmenter in bf16 before commit 1b0084b, fp32 "
                "since)"}
    with tempfile.TemporaryDirectory() as tmp:
        loops = _loops(device, args.size, args.steps, args.batch_divisor, Path(tmp))
        for name in only:
            row = {}
            # `--compile` leaves the segmenter eager (it measured slower compiled): its loops are timed once.
            modes = ("eager",) if name.startswith("segmenter") else ("eager", "compiled")
            for mode in modes:
                set_compile(mode == "compiled", args.backend)
                torch._dynamo.reset()
                row[mode] = loops[name]()
                print(name, mode, json.dumps(row[mode]), flush=True)
            set_compile(False)
            if "compiled" in row:
                row.update(_compare(row["eager"], row["compiled"]))
            result["workloads"][name] = row
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
