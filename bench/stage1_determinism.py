"""Does stage 1 give the same generators twice? Retrains a benchmark folder's stage 1 (its stored settings and source
pairs, the CPU precision its results.json records) in a work folder and compares every stored tensor with the
folder's own.

    python bench/stage1_determinism.py --bench-out bench/results/cpu-96px-v2 --work /tmp/stage1-again \
        [--out bench/results/stage1-determinism-cpu.json] [--note TEXT]

A work folder that already holds finished generators is only compared (its training resumes to the end first).
Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from AlignFlowLib import pipeline  # noqa: E402
from AlignFlowLib.bench.protocol import BENCH_PRESETS, _git_commit  # noqa: E402
from AlignFlowLib.checkpoint import load_checkpoint  # noqa: E402
from AlignFlowLib.config import RunConfig, from_dict  # noqa: E402
from AlignFlowLib.device import set_cpu_bf16  # noqa: E402

GENERATORS = ("image_generator_last.pt", "mask_generator_last.pt")


def _tensors(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_tensors(value, f"{prefix}{key}."))
        elif torch.is_tensor(value):
            out[f"{prefix}{key}"] = value
    return out


def compare(a_path: Path, b_path: Path) -> dict:
    a, b = _tensors(load_checkpoint(a_path)), _tensors(load_checkpoint(b_path))
    shared = [k for k in a if k in b and a[k].shape == b[k].shape]
    differ = [k for k in shared if not torch.equal(a[k], b[k])]
    return {"tensors": len(a), "same_keys": a.keys() == b.keys(), "tensors_that_differ": len(differ),
            "max_abs_diff": max(((a[k].float() - b[k].float()).abs().max().item() for k in differ), default=0.0),
            "identical": a.keys() == b.keys() and not differ}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    stored = json.loads((args.bench_out / "run" / "config.json").read_text())
    config = from_dict(RunConfig, stored["config"])
    results = args.bench_out / "results.json"
    recorded = json.loads(results.read_text()) if results.is_file() else {}
    bf16 = set_cpu_bf16(recorded.get("cpu_bf16", BENCH_PRESETS["cpu"].cpu_bf16))
    run, _, _ = pipeline.start_run(args.work, config, {"source": str(args.bench_out / "source_pairs")},
                                   resume=(args.work / "config.json").is_file())
    started = time.monotonic()
    pipeline.train_generators(run, torch.device("cpu"), resume=True)
    result = {
        "bench_out": str(args.bench_out), "work": str(args.work), "note": args.note,
        "commit_of_this_call": _git_commit(),
        "device": f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "cpu_bf16": bf16, "seconds_this_call": round(time.monotonic() - started, 1),
        "generators": {name: compare(args.bench_out / "run" / "checkpoints" / name, run.root / "checkpoints" / name)
                       for name in GENERATORS}}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
