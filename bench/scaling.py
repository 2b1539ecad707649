"""Data-parallel scaling of every training stage under torchrun, and alignment's memory against sampler steps.

For each process count the same global batch is trained by `torchrun --nproc-per-node N` (this script in --worker
mode, real library loops on random data), and rank 0 reports samples per second per stage from the loops' own
progress events after a warm-up. Efficiency = throughput(N) / (N · throughput(1)). On a CPU every process runs one
thread (so N processes use N cores), and one more row gives a single process all cores through intra-op threads:
whether data parallelism beats threading on the same cores. On GPUs (1, 2, 4, 8 up to the count present) each rank
has its own GPU.

Memory: alignment's peak memory with 10 and with 50 sampler steps (gradients through the last step, activation
checkpointing), each in a fresh process: peak RSS on CPU, `max_memory_allocated` on CUDA.

    .venv/bin/python bench/scaling.py                       # writes bench/results/scaling-<device>.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGES = ("image_generator", "mask_generator", "align", "segmenter")


def _config(size: int, steps: int, sampler_steps: int = 10):
    from AlignFlowLib.config import AlignConfig, SamplerConfig, SegmenterConfig, replace
    from AlignFlowLib.bench.protocol import BENCH_PRESETS

    cpu = BENCH_PRESETS["cpu"].run
    never = 10 ** 6  # no checkpoint inside the timed steps
    return {
        "image_generator": replace(cpu.image_generator, num_steps=steps, batch_size=16, checkpoint_every_steps=never),
        "mask_generator": replace(cpu.mask_generator, num_steps=steps, batch_size=16, checkpoint_every_steps=never),
        "align": AlignConfig(num_steps=max(steps // 2, 12), batch_size=8, feature_size_px=size,
                             sampler=SamplerConfig(num_steps=sampler_steps), checkpoint_every_steps=never),
        "segmenter": SegmenterConfig(num_steps=steps, batch_size=16, learning_rate=2e-3, ema_halflife_steps=30),
    }


def _throughput(times: list[tuple[int, float]], batch: int, warmup: int) -> float:
    timed = [(step, t) for step, t in times if step >= warmup]
    (s0, t0), (s1, t1) = timed[0], timed[-1]
    return (s1 - s0) * batch / (t1 - t0)


def worker(args: argparse.Namespace) -> None:
    """One rank of a torchrun job (or the only process): time each stage's real training loop."""
    import torch

    from AlignFlowLib import distributed
    from AlignFlowLib.data.folders import PairSet
    from AlignFlowLib.device import select_device
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.segmenter.train import train_segmenter
    from AlignFlowLib.train.align import align_generator
    from AlignFlowLib.train.generators import train_image_generator, train_mask_generator
    from AlignFlowLib.config import DataConfig

    torch.set_num_threads(args.threads)
    device = distributed.init_from_environment(select_device(args.device))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(256, 3, args.size, args.size, generator=generator) * 2 - 1
    masks = (torch.rand(256, 1, args.size // 8, args.size // 8, generator=generator) > 0.6).float()
    masks = torch.nn.functional.interpolate(masks, size=(args.size, args.size))
    pairs = PairSet(images, masks, [f"{i}" for i in range(len(images))])
    configs = _config(args.size, args.steps)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            times: list[tuple[int, float]] = []

            def record(event: dict) -> None:
                if event.get("event") == "progress":
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append((event["step"], time.perf_counter()))

            config = configs[stage]
            checkpoint = Path(tmp) / f"{stage}.pt"
            if stage == "image_generator":
                train_image_generator(pairs, config, DataConfig(image_size_px=args.size), device, checkpoint,
                                      on_event=record)
            elif stage == "mask_generator":
                train_mask_generator(pairs, config, device, checkpoint, on_event=record)
            elif stage == "align":
                model = build_velocity_unet(3, 1, configs["image_generator"])
                align_generator(model, images, masks, images[:1], config, device, checkpoint, on_event=record)
            else:
                train_segmenter(images, masks, config, device, on_event=record, checkpoint_path=checkpoint)
            warmup = 2 if stage == "align" else 10
            result[stage] = {"samples_per_s": _throughput(times, config.batch_size, warmup),
                             "global_batch": config.batch_size}
    if distributed.is_main():
        print("SCALING " + json.dumps({"world_size": distributed.world().size, "stages": result}), flush=True)
    distributed.shutdown()


def memory_worker(args: argparse.Namespace) -> None:
    """Alignment with `args.sampler_steps` sampler steps in a fresh process; prints its peak memory."""
    import torch

    from AlignFlowLib.config import replace
    from AlignFlowLib.device import select_device
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.train.align import align_generator

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    config = _config(args.size, 6, args.sampler_steps)
    align = replace(config["align"], num_steps=3)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, args.size, args.size, generator=generator) * 2 - 1
    masks = (images[:, :1] > 0).float()
    model = build_velocity_unet(3, 1, config["image_generator"])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        align_generator(model, images, masks, images[:2], align, device, Path(tmp) / "align.pt")
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("MEMORY " + json.dumps({"sampler_steps": args.sampler_steps, "peak_mib": peak,
                                  "peak_before_alignment_mib": baseline,
                                  "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS"}),
          flush=True)


def _run(command: list[str], env: dict[str, str], marker: str) -> dict:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker + " ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(marker) + 1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--processes", default=None, help="comma list (default: 1,2 on CPU; 1,2,4,8 ≤ GPUs on CUDA)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--sampler-steps", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.memory_worker:
        memory_worker(args)
        return 0

    import torch

    from AlignFlowLib.device import select_device

    device = select_device(args.device)
    cores = os.cpu_count() or 1
    if args.processes:
        counts = [int(n) for n in args.processes.split(",")]
    elif device.type == "cuda":
        counts = [n for n in (1, 2, 4, 8) if n <= torch.cuda.device_count()]
    else:
        counts = [1, 2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    script = [str(Path(__file__).resolve()), "--device", device.type, "--size", str(args.size), "--steps",
              str(args.steps), "--stages", args.stages]
    runs = []
    plan = [(count, 1) for count in counts]
    if device.type == "cpu" and cores > 1:
        plan.append((1, cores))  # one process, every core through threads
    for count, threads in plan:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(count),
                   *script, "--worker", "--threads", str(threads)]
        started = time.monotonic()
        measured = _run(command, {**env, "OMP_NUM_THREADS": str(threads)}, "SCALING")
        measured.update(threads_per_process=threads, wall_s=round(time.monotonic() - started, 1))
        runs.append(measured)
        print(json.dumps(measured))
    base = runs[0]["stages"]  # one process, one thread (CPU) or one GPU
    table = []
    for run in runs:
        n, threads = run["world_size"], run["threads_per_process"]
        for stage, entry in run["stages"].items():
            efficiency = entry["samples_per_s"] / (n * threads * base[stage]["samples_per_s"])
            table.append({"processes": n, "threads_per_process": threads, "stage": stage,
                          "samples_per_s": round(entry["samples_per_s"], 2), "efficiency": round(efficiency, 3)})
    memory = [_run([sys.executable, *script, "--memory-worker", "--sampler-steps", str(steps), "--threads",
                    str(cores if device.type == "cpu" else 1)], env, "MEMORY") for steps in (10, 50)]
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    summary = {"device": gpu or f"CPU ({platform.machine()}, {cores} cores)", "device_type": device.type,
               "size_px": args.size, "torch": torch.__version__, "runs": runs, "table": table, "memory": memory,
               "note": "efficiency = samples/s / (processes x threads x samples/s of one process with one thread "
                       "(CPU) or one GPU); on CPU every process runs one thread, plus one row of one process using "
                       "every core"}
    out = args.out or REPO / "bench" / "results" / f"scaling-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"{'processes':>9} {'threads':>7} {'stage':>16} {'samples/s':>10} {'efficiency':>10}")
    for row in table:
        print(f"{row['processes']:>9} {row['threads_per_process']:>7} {row['stage']:>16} "
              f"{row['samples_per_s']:>10.2f} {row['efficiency']:>10.3f}")
    for entry in memory:
        print(f"alignment, {entry['sampler_steps']} sampler steps: peak {entry['peak_mib']:.0f} MiB ({entry['measure']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
