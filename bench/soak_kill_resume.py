"""Crash-safety soak: SIGKILL `alignflow run` at random moments, `--resume` it, compare with an uninterrupted run.

A small full run (stage 1, mask generator, alignment, synthesis, segmenter, evaluation, report) on phantom data is
made once without interruption. Then, for each of --kills trials, the same run is started, killed with SIGKILL (its
whole process group, as a crash or a power cut would) at a moment drawn uniformly within the reference run's wall
time (`--random-times`) or, by default, at a random moment within each stage in turn (so every stage is hit), and
resumed with `--resume` until it exits. The stage that was running at the kill is read from the run's own
events.jsonl. The finished run must equal the reference: same synthetic images (bytes), same exported segmenter
weights (tensors) and the same metrics, since every stage restores its random-number state from its checkpoint.

Steps that take milliseconds (writing the synthetic pairs, each segmenter export, the evaluation that writes
metrics.json) are hit exactly instead, once each: the run is started through `bench/fault_injection.py`, which kills
it with SIGKILL at the N-th call of the function doing that step (`--no-fault-points` skips these).

    .venv/bin/python bench/soak_kill_resume.py --kills 18          # 3 per stage; writes bench/results/soak-cpu.json

Prints one line per trial and the summary; POSIX only (process groups).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from AlignFlowLib.config import apply_overrides, to_dict  # noqa: E402
from AlignFlowLib.data.phantoms import write_phantom_dataset  # noqa: E402
from AlignFlowLib.presets import DEMO  # noqa: E402

# A run that does every stage in about a minute on 2 cores, with frequent checkpoints so kills land between them.
SOAK_SETTINGS = (
    "image_generator.channels=16,32", "image_generator.attention_levels=false,false",
    "image_generator.norm_num_groups=8", "image_generator.num_steps=60", "image_generator.batch_size=8",
    "image_generator.checkpoint_every_steps=10",
    "mask_generator.channels=8,16", "mask_generator.attention_levels=false,false", "mask_generator.num_head_channels=8",
    "mask_generator.norm_num_groups=8", "mask_generator.num_steps=30", "mask_generator.batch_size=8",
    "mask_generator.checkpoint_every_steps=10", "mask_generator.max_train_iou=1.01",
    "align.num_steps=6", "align.batch_size=4", "align.eval_every_steps=2", "align.eval_num_images=8",
    "align.feature_size_px=32", "align.checkpoint_every_steps=2",
    "synthesis.num_pairs=16", "synthesis.batch_size=8", "segmenter.num_steps=40", "segmenter.batch_size=8",
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_digest(path: Path) -> str:
    """The tensors, not the file bytes: safetensors writes its metadata in no fixed order."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def outputs(run: Path) -> dict:
    """What must not depend on whether the run was interrupted."""
    synthetic = sorted((run / "synthetic").rglob("*.png"))
    metrics = json.loads((run / "metrics.json").read_text())
    return {"synthetic": {str(p.relative_to(run)): _digest(p) for p in synthetic},
            "segmenter": _weights_digest(run / "segmenter" / "exported" / "model.safetensors"),
            "target_test": metrics.get("target_test"), "align": metrics.get("align")}


def command(data: dict, config: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "AlignFlowLib.cli", "run", "--source", str(data["source"]), "--references",
            str(data["references"]), "--test", str(data["test"]), "--out", str(run), "--config", str(config),
            "--device", "cpu", "--progress", "jsonl"]


def last_stage(run: Path) -> str:
    stage = "start"
    events = run / "events.jsonl"
    if events.is_file():
        for line in events.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by the kill
            if event.get("event") == "progress":
                stage = event.get("stage", stage)
    return stage


STAGES = ("image_generator", "mask_generator", "source_segmenter", "align", "synthesize", "segmenter")

# Exact kill points in the short steps: key → (what is cut, module:function as its caller names it, which call).
FAULT_POINTS = {
    "source_segmenter_export": ("source_segmenter export (weights written, model.json not)",
                                "AlignFlowLib.segmenter.export:write_json_atomic", 1),
    "synthesize_pairs": ("synthesize (9th of 32 PNG files)", "AlignFlowLib.data.folders:write_png", 9),
    "synthesize_last_pair": ("synthesize (last PNG file, before the manifest)", "AlignFlowLib.data.folders:write_png",
                             32),
    "segmenter_export": ("segmenter export (weights written, model.json not)",
                         "AlignFlowLib.segmenter.export:write_json_atomic", 2),
    "evaluation": ("evaluation (source-only scored, final model not)", "AlignFlowLib.pipeline:evaluate_exported", 2),
    "metrics": ("metrics.json (results computed, not written)", "AlignFlowLib.pipeline:_brief", 2),
}


def fault_command(target: str, call: int, data: dict, config: Path, run: Path, resume: bool = False) -> list[str]:
    """`command(...)` started through bench/fault_injection.py, SIGKILLed at the `call`-th call of `target`."""
    return ([sys.executable, str(REPO / "bench" / "fault_injection.py"), "--at", target, "--call", str(call),
             "--fault", "kill", "--"] + command(data, config, run)[3:] + (["--resume"] if resume else []))


def wait_for_stage(run: Path, stage: str, process: subprocess.Popen, timeout_s: float = 600) -> bool:
    """Poll the run's events.jsonl until `stage` reports progress; False if the run ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        events = run / "events.jsonl"
        if events.is_file() and f'"stage": "{stage}"' in events.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak-cpu.json")
    parser.add_argument("--random-times", action="store_true",
                        help="kill at a uniform moment of the run instead of inside each stage in turn")
    parser.add_argument("--no-fault-points", dest="fault_points", action="store_false",
                        help="skip the exact kills in the short steps (synthetic pairs, exports, evaluation)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="alignflow-soak-") as tmp:
        root = Path(tmp)
        paths = write_phantom_dataset(root / "data", size_px=32, num_source=60, num_references=5,
                                      num_target_test=20, seed=0)
        data = {"source": paths.source, "references": paths.references, "test": paths.target_test}
        config = root / "soak.json"
        config.write_text(json.dumps({"config": to_dict(apply_overrides(DEMO, SOAK_SETTINGS))}))

        t0 = time.monotonic()
        reference = subprocess.run(command(data, config, root / "reference"), env=env, capture_output=True,
                                   text=True)
        reference_s = time.monotonic() - t0
        if reference.returncode != 0:
            print(reference.stdout[-2000:], reference.stderr[-2000:])
            return 1
        expected = outputs(root / "reference")
        print(f"reference run: {reference_s:.1f} s")

        def resume_and_compare(run: Path) -> tuple[int | None, int, bool, list[str]]:
            resumes, code = 0, None
            while code != 0 and resumes < 3:
                resumes += 1
                code = subprocess.run(command(data, config, run) + ["--resume"], env=env, capture_output=True,
                                      text=True).returncode
            same = code == 0 and outputs(run) == expected
            differs = [] if same or code != 0 else [k for k, v in outputs(run).items() if v != expected[k]]
            return code, resumes, same, differs

        trials = []
        for trial in range(args.kills):
            run = root / f"trial{trial}"
            target = None if args.random_times else STAGES[trial % len(STAGES)]
            delay = rng.uniform(0.5, reference_s) if target is None else rng.uniform(0.0, 1.0)
            started_at = time.monotonic()
            process = subprocess.Popen(command(data, config, run), env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            if target is not None and not wait_for_stage(run, target, process):
                delay = -1.0  # the run ended before the stage showed
            try:
                process.wait(timeout=max(delay, 0.0))
                killed = False  # finished before the kill moment
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                killed = True
            delay = time.monotonic() - started_at
            stage = last_stage(run) if killed else "finished"
            code, resumes, same, differs = resume_and_compare(run) if killed else (0, 0, outputs(run) == expected, [])
            trials.append({"delay_s": round(delay, 2), "killed": killed, "stage_at_kill": stage,
                           "resume_exit_code": code, "resumes": resumes, "identical": same, "differs": differs})
            print(f"trial {trial}: kill at {delay:5.1f} s in {stage:18s} resume exit {code}, "
                  f"{'identical' if same else 'DIFFERENT ' + ','.join(differs)}")

        for index, (what, target, call) in enumerate(FAULT_POINTS.values() if args.fault_points else ()):
            run = root / f"fault{index}"
            started_at = time.monotonic()
            exit_code = subprocess.run(fault_command(target, call, data, config, run), env=env, capture_output=True,
                                       text=True).returncode
            killed = exit_code == -signal.SIGKILL
            code, resumes, same, differs = resume_and_compare(run) if killed else (exit_code, 0, False, [])
            trials.append({"delay_s": round(time.monotonic() - started_at, 2), "killed": killed,
                           "stage_at_kill": what, "fault_at": f"{target} call {call}",
                           "resume_exit_code": code, "resumes": resumes, "identical": same, "differs": differs})
            print(f"fault {index}: {what}: {'killed' if killed else f'NOT KILLED (exit {exit_code})'}, "
                  f"resume exit {code}, {'identical' if same else 'DIFFERENT ' + ','.join(differs)}")

    by_stage: dict[str, dict[str, int]] = {}
    killed = [t for t in trials if t["killed"]]
    for t in killed:
        entry = by_stage.setdefault(t["stage_at_kill"], {"kills": 0, "completed": 0, "identical": 0})
        entry["kills"] += 1
        entry["completed"] += t["resume_exit_code"] == 0
        entry["identical"] += t["identical"]
    summary = {"device": "cpu", "kills": len(killed), "completed": sum(t["resume_exit_code"] == 0 for t in killed),
               "identical": sum(t["identical"] for t in killed), "not_killed": len(trials) - len(killed),
               "reference_run_s": round(reference_s, 1), "by_stage": by_stage, "trials": trials,
               "settings": list(SOAK_SETTINGS), "wall_time_s": round(time.monotonic() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("trials", "settings")}, indent=2))
    faults_missed = any(not t["killed"] for t in trials if "fault_at" in t)
    return 0 if summary["identical"] == summary["kills"] and not faults_missed else 1


if __name__ == "__main__":
    sys.exit(main())
