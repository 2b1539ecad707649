"""A few kill points of bench/soak_kill_resume.py in CI: a whole `alignflow run` killed with SIGKILL in the middle of
alignment, or exactly while it writes synthetic pairs and then while it exports the segmenter, and resumed, ends
exactly like one that was never interrupted (the script runs many)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import REPO

SCRIPT = REPO / "bench" / "soak_kill_resume.py"
spec = importlib.util.spec_from_file_location("soak_kill_resume", SCRIPT)
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


@pytest.fixture(scope="module")
def soak_setup(tmp_path_factory):
    """Phantom data, the soak's small configuration and one uninterrupted reference run, shared by the kill points."""
    from AlignFlowLib.config import apply_overrides, to_dict
    from AlignFlowLib.data.phantoms import write_phantom_dataset
    from AlignFlowLib.presets import DEMO

    root = tmp_path_factory.mktemp("soak")
    paths = write_phantom_dataset(root / "data", size_px=32, num_source=60, num_references=5, num_target_test=20,
                                  seed=0)
    data = {"source": paths.source, "references": paths.references, "test": paths.target_test}
    config = root / "soak.json"
    config.write_text(json.dumps({"config": to_dict(apply_overrides(DEMO, soak.SOAK_SETTINGS))}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(soak.command(data, config, root / "reference"), env=env, capture_output=True,
                               text=True, timeout=900)
    assert reference.returncode == 0, reference.stderr[-2000:]
    return root, data, config, env, soak.outputs(root / "reference")


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
# Stage 1 killed and resumed is covered by test_cli.py::test_train_kill_and_resume and, under torchrun, by
# test_distributed.py; the soak script kills every stage.
@pytest.mark.parametrize("stage,checkpoint,step", [("align", "align_last.pt", 2)])
def test_run_killed_mid_stage_and_resumed_equals_an_uninterrupted_run(soak_setup, stage, checkpoint, step):
    from AlignFlowLib.checkpoint import load_checkpoint

    root, data, config, env, expected = soak_setup
    run = root / f"killed-{stage}"
    # Stage 1 and the source segmenter are done (a copy of the reference run without alignment and what follows),
    # so the kill lands in alignment without training stage 1 again.
    shutil.copytree(root / "reference", run)
    for later in ("synthetic", "segmenter", "metrics.json", "checkpoints/segmenter_last.pt",
                  "checkpoints/align_last.pt", "checkpoints/aligned_generator.pt"):
        path = run / later
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    process = subprocess.Popen(soak.command(data, config, run) + ["--resume"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    path = run / "checkpoints" / checkpoint
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if path.is_file() and load_checkpoint(path)["step"] >= step:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run got past {stage} before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert soak.last_stage(run) == stage

    resumed = subprocess.run(soak.command(data, config, run) + ["--resume"], env=env, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert soak.outputs(run) == expected


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_kills_while_writing_pairs_and_between_the_export_files_resume_to_the_same_run(soak_setup):
    """Steps of milliseconds, hit exactly by bench/fault_injection.py: SIGKILL at the 9th synthetic PNG file, then (on
    the resumed run) after the segmenter's weights are written but before its model.json."""
    from AlignFlowLib.segmenter.export import is_current_export

    root, data, config, env, expected = soak_setup
    run = root / "killed-short-steps"
    # Stage 1 and alignment are done (a copy of the reference run without what follows them): only the short
    # steps are left to kill.
    shutil.copytree(root / "reference", run)
    for later in ("synthetic", "segmenter", "metrics.json", "checkpoints/segmenter_last.pt"):
        path = run / later
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    _, target, call = soak.FAULT_POINTS["synthesize_pairs"]
    first = subprocess.run(soak.fault_command(target, call, data, config, run, resume=True), env=env,
                           capture_output=True)
    assert first.returncode == -signal.SIGKILL
    assert not (run / "synthetic").exists() and list(run.glob(".synthetic.new-*"))  # half-written, aside

    _, target, _ = soak.FAULT_POINTS["segmenter_export"]  # its first call now: the source segmenter's export is done
    second = subprocess.run(soak.fault_command(target, 1, data, config, run, resume=True), env=env,
                            capture_output=True)
    assert second.returncode == -signal.SIGKILL
    exported = run / "segmenter" / "exported"
    assert (exported / "model.safetensors").is_file() and not is_current_export(exported)
    assert not list(run.glob(".synthetic.*"))  # the leftover of the first kill was cleared

    third = subprocess.run(soak.command(data, config, run) + ["--resume"], env=env, capture_output=True, text=True,
                           timeout=900)
    assert third.returncode == 0, third.stderr[-2000:]
    assert soak.outputs(run) == expected


def test_stage_1_gives_the_same_generator_twice(tmp_path):
    """Initial weights come from the config's seed (not from whatever the global RNG holds), so two trainings with
    one config are identical; the global RNG is left as it was."""
    import torch

    from AlignFlowLib.config import ImageGeneratorConfig
    from AlignFlowLib.train.flow_matching import train_flow_model

    config = ImageGeneratorConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=8,
                                  num_head_channels=8, num_steps=3, batch_size=2, checkpoint_every_steps=3)

    def batch(generator):
        return torch.randn(2, 3, 16, 16, generator=generator), torch.zeros(2, 1, 16, 16)

    states = []
    for attempt in range(2):
        torch.manual_seed(attempt)  # a different global state each time must not matter
        before = torch.random.get_rng_state()
        model = train_flow_model("image", batch, config, {"data_channels": 3, "condition_channels": 1},
                                 torch.device("cpu"), tmp_path / f"ck{attempt}.pt")
        assert torch.equal(torch.random.get_rng_state(), before)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
