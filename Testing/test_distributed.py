"""Data parallelism on CPU with gloo and 2 processes equals one process on the global batch.

Each case trains once in this process and once in 2 spawned ranks (torch.multiprocessing, gloo) from the same seed
and compares the weights rank 0 saved: every stage (flow matching, segmenter, alignment with its gathered MMD) must
take the same step. The torchrun cases run the real CLI: a 2-process `run`, and a 2-process `train` killed with
SIGKILL and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import REPO, tiny_config
from ports import free_port

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch built without gloo")
CPU = torch.device("cpu")
WORLD = 2


def _spawned(rank: int, port: int, job: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from AlignFlowLib import distributed

    distributed.init_from_environment(CPU)
    try:
        JOBS[job](Path(out))
        distributed.barrier()  # rank 0 may still be writing; leaving the group early aborts the other rank
    finally:
        distributed.shutdown()


def _two_ranks(job: str, out: Path, attempts: int = 3) -> None:
    """A port found free can be taken before rank 0 binds it (the other xdist worker starts servers and gloo
    connections), so a rendezvous that could not bind its port is retried on a new one; any other failure is not."""
    for attempt in range(attempts):
        try:
            mp.start_processes(_spawned, args=(free_port(), job, str(out)), nprocs=WORLD, start_method="spawn",
                               join=True)
            return
        except mp.ProcessRaisedException as error:
            if "address already in use" not in str(error).lower() or attempt == attempts - 1:
                raise


def _flow_job(out: Path) -> None:
    from AlignFlowLib.train.flow_matching import train_flow_model

    config = tiny_config().image_generator
    config = type(config)(**{**config.__dict__, "num_steps": 2, "batch_size": 4, "checkpoint_every_steps": 2,
                             "learning_rate": 1e-3})

    def batch(generator):
        return torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1, (torch.rand(4, 1, 16, 16,
                                                                                  generator=generator) > 0.5).float()

    train_flow_model("image", batch, config, {"data_channels": 3, "condition_channels": 1}, CPU, out / "flow.pt")


def _segmenter_job(out: Path) -> None:
    from AlignFlowLib.config import SegmenterConfig
    from AlignFlowLib.segmenter.train import train_segmenter

    generator = torch.Generator().manual_seed(5)
    images = torch.rand(12, 3, 32, 32, generator=generator) * 2 - 1
    masks = (images[:, :1] > 0).float()
    # segresnet (group norm): PyTorch has no SyncBatchNorm on CPU, so the batch-norm `unet` is only close there
    config = SegmenterConfig(architecture="segresnet", num_steps=2, batch_size=4, learning_rate=1e-4)
    train_segmenter(images, masks, config, CPU, checkpoint_path=out / "segmenter.pt")


def _align_job(out: Path, reward_views: bool = False) -> None:
    from AlignFlowLib.config import AlignConfig, SamplerConfig
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.train.align import align_generator

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_velocity_unet(3, 1, tiny_config().image_generator)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=generator) * 2 - 1
    masks = (torch.rand(8, 1, 32, 32, generator=generator) > 0.5).float()
    references = torch.rand(3, 3, 32, 32, generator=generator) * 2 - 1
    config = AlignConfig(num_steps=2, batch_size=4, learning_rate=1e-4, sampler=SamplerConfig(num_steps=3),
                         grad_last_steps=2, feature_size_px=32, eval_every_steps=1, eval_num_images=4,
                         checkpoint_every_steps=1, reward_views=reward_views)
    align_generator(model, images, masks, references, config, CPU, out / ("align-views.pt" if reward_views else
                                                                          "align.pt"))


def _align_views_job(out: Path) -> None:
    """Alignment whose reward scores random crops: each rank must crop its own rows as one process would."""
    _align_job(out, reward_views=True)


def _mmd_job(out: Path) -> None:
    """A linear feature map under DDP; the MMD of all ranks' gathered features to fixed references."""
    from AlignFlowLib import distributed
    from AlignFlowLib.reward.mmd import mmd2_unbiased

    inputs, references, layer = _mmd_case()
    net = distributed.wrap(layer, CPU)
    mmd = mmd2_unbiased(distributed.gather_rows(net(distributed.shard(inputs))), references, "rbf")
    mmd.backward()
    if distributed.is_main():
        torch.save({"mmd": mmd.detach(), "grad": layer.weight.grad}, out / "mmd.pt")


def _dice_job(out: Path) -> None:
    """The segmenter's loss (BCE + soft Dice over the batch) of a small convolution under DDP."""
    from AlignFlowLib import distributed
    from AlignFlowLib.segmenter.train import segmentation_loss

    images, masks, layer = _dice_case()
    net = distributed.wrap(layer, CPU)
    loss = segmentation_loss(net(distributed.shard(images)), distributed.shard(masks))
    loss.backward()
    mean_loss = loss.detach().clone()  # the BCE part is each rank's mean: the global loss is their average
    torch.distributed.all_reduce(mean_loss)
    if distributed.is_main():
        torch.save({"loss": mean_loss / WORLD, "grad": layer.weight.grad}, out / "dice.pt")


def _dice_case():
    generator = torch.Generator().manual_seed(6)
    images = torch.randn(4, 3, 8, 8, generator=generator)
    masks = torch.zeros(4, 1, 8, 8)
    masks[:1, :, 2:6, 2:6] = 1  # foreground in one rank's rows only: the Dice is not a mean of per-rank Dice
    with torch.random.fork_rng():
        torch.manual_seed(7)
        layer = torch.nn.Conv2d(3, 1, 3, padding=1)
    return images, masks, layer


def _mmd_case():
    generator = torch.Generator().manual_seed(3)
    inputs, references = torch.randn(8, 6, generator=generator), torch.randn(5, 4, generator=generator)
    with torch.random.fork_rng():
        torch.manual_seed(4)
        layer = torch.nn.Linear(6, 4)
    return inputs, references, layer


def _nan_job(out: Path) -> None:
    """The training loops' smoothed loss turning non-finite on rank 1 only: its gradients reach every rank, so
    every rank's read must stop training, rank 0 (the one that saves) included."""
    from AlignFlowLib import distributed
    from AlignFlowLib.errors import TrainingDivergedError
    from AlignFlowLib.train.running_loss import RunningLoss

    running = RunningLoss()
    running.add(torch.tensor(1.0 + distributed.world().rank))
    finite = running.read("test", 1)  # the mean over ranks: (1 + 2) / 2
    running.add(torch.tensor(float("nan") if distributed.world().rank == 1 else 2.0))
    try:
        running.read("test", 2)
        raised = False
    except TrainingDivergedError:
        raised = True
    if distributed.is_main():
        torch.save({"finite": torch.tensor(finite), "raised": torch.tensor(raised)}, out / "nan.pt")


def _every_job(out: Path) -> None:
    """All the cases in one pair of ranks (starting processes is the slow part)."""
    for job in ("flow", "segmenter", "align", "align_views", "mmd", "dice", "nan"):
        JOBS[job](out)


JOBS = {"flow": _flow_job, "segmenter": _segmenter_job, "align": _align_job, "align_views": _align_views_job,
        "mmd": _mmd_job, "dice": _dice_job, "nan": _nan_job, "all": _every_job}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """What rank 0 saved for every case, trained once by 2 spawned gloo ranks."""
    out = tmp_path_factory.mktemp("two_ranks")
    _two_ranks("all", out)
    return out


def _weights(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)[key]


@pytest.mark.parametrize("job,checkpoint", [("flow", "flow.pt"), ("segmenter", "segmenter.pt"),
                                            ("align", "align.pt"), ("align_views", "align-views.pt")])
def test_a_ddp_step_equals_one_process_on_the_global_batch(tmp_path, two_ranks, job, checkpoint):
    JOBS[job](tmp_path)
    one, two = _weights(tmp_path / checkpoint), _weights(two_ranks / checkpoint)
    assert one.keys() == two.keys()
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)
    saved = torch.load(two_ranks / checkpoint, weights_only=True)
    assert saved["step"] == 2 and saved["distributed"]["world_size"] == WORLD
    initial = _initial_weights(job)  # the weights did move: the comparison is not of two initialisations
    assert any(not torch.equal(one[name], value) for name, value in initial.items())


def _initial_weights(job: str) -> dict[str, torch.Tensor]:
    from AlignFlowLib.config import SegmenterConfig
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.segmenter.model import build_segmenter

    with torch.random.fork_rng():
        if job == "segmenter":
            torch.manual_seed(SegmenterConfig().seed)
            return build_segmenter("segresnet", 3).state_dict()
        torch.manual_seed(tiny_config().image_generator.seed if job == "flow" else 0)
        return build_velocity_unet(3, 1, tiny_config().image_generator).state_dict()


def test_a_loss_non_finite_on_one_rank_stops_every_rank(two_ranks):
    got = torch.load(two_ranks / "nan.pt", weights_only=True)
    assert got["finite"].item() == pytest.approx(1.5)
    assert got["raised"].item()


def test_the_gathered_mmd_and_its_gradient_equal_one_process(two_ranks):
    from AlignFlowLib.reward.mmd import mmd2_unbiased

    inputs, references, layer = _mmd_case()
    mmd = mmd2_unbiased(layer(inputs), references, "rbf")
    mmd.backward()
    got = torch.load(two_ranks / "mmd.pt", weights_only=True)
    torch.testing.assert_close(got["mmd"], mmd.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["grad"], layer.weight.grad, rtol=1e-4, atol=1e-6)
    assert layer.weight.grad.abs().sum() > 0


def test_the_segmenter_loss_over_ranks_and_its_gradient_equal_one_process(two_ranks):
    from AlignFlowLib.segmenter.train import segmentation_loss

    images, masks, layer = _dice_case()
    loss = segmentation_loss(layer(images), masks)
    loss.backward()
    got = torch.load(two_ranks / "dice.pt", weights_only=True)
    torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["grad"], layer.weight.grad, rtol=1e-4, atol=1e-6)


def test_a_batch_that_does_not_divide_among_ranks_is_a_usage_error(monkeypatch):
    from AlignFlowLib import distributed
    from AlignFlowLib.errors import UsageError

    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=1, size=2))
    assert distributed.local_rows(6) == slice(3, 6)
    with pytest.raises(UsageError, match="batch size 5 does not divide among 2 processes"):
        distributed.local_rows(5)


# ------------------------------------------------------------------ the CLI under torchrun

# "--" ends torchrun's own options: without it torchrun takes `--run` for an abbreviation of its `--run-path`.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD)]


def _torchrun_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _config_file(root: Path, **sizes) -> Path:
    from AlignFlowLib.config import to_dict

    path = root / "tiny.json"
    path.write_text(json.dumps({"config": to_dict(tiny_config(**sizes))}))
    return path


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks through /proc")
def test_torchrun_train_killed_and_resumed_equals_an_uninterrupted_two_process_run(tmp_path, phantom_paths):
    from AlignFlowLib.checkpoint import load_checkpoint

    config = _config_file(tmp_path, image_steps=30, mask_steps=10, checkpoint_every=10)

    def train(run: Path, *extra: str) -> list[str]:
        return TORCHRUN + ["-m", "AlignFlowLib.cli", "--", "train", "--source", str(phantom_paths.source),
                           "--out", str(run), "--config", str(config), "--device", "cpu", "--progress", "jsonl",
                           *extra]

    whole = subprocess.run(train(tmp_path / "whole"), env=_torchrun_env(), capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    events = [json.loads(line) for line in whole.stdout.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "done" for e in events) == 1  # rank 0 alone reports
    assert any("torchrun: 2 processes (gloo)" in e.get("message", "") for e in events)

    killed = tmp_path / "killed"
    process = subprocess.Popen(train(killed), env=_torchrun_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = killed / "checkpoints" / "image_generator_last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 10:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # torchrun itself; its ranks run in sessions of their own ...
    process.wait()
    deadline = time.monotonic() + 60
    while _ranks_of(killed) and time.monotonic() < deadline:  # ... and stop by themselves once it is gone
        time.sleep(0.2)
    assert not _ranks_of(killed), "ranks outlived the killed torchrun"
    assert load_checkpoint(checkpoint)["step"] < 30

    resumed = subprocess.run(train(killed, "--resume"), env=_torchrun_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("image_generator_last.pt", "mask_generator_last.pt"):
        expected = load_checkpoint(tmp_path / "whole" / "checkpoints" / name)
        got = load_checkpoint(killed / "checkpoints" / name)
        assert got["step"] == expected["step"] and got["distributed"]["world_size"] == WORLD
        for key, value in expected["ema"].items():
            torch.testing.assert_close(got["ema"][key], value, rtol=0, atol=0, msg=key)


def _ranks_of(run: Path) -> list[int]:
    """Pids of live processes whose command line names `run` (the ranks of a job on that run folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if str(run) in command and "AlignFlowLib.cli" in command and state != "Z":
                pids.append(int(entry.name))
    return pids


def test_torchrun_runs_the_whole_pipeline(tmp_path, phantom_paths):
    config = _config_file(tmp_path, image_steps=8, mask_steps=4, align_steps=2, segmenter_steps=8,
                          checkpoint_every=4)
    run = tmp_path / "run"
    done = subprocess.run(TORCHRUN + ["-m", "AlignFlowLib.cli", "--", "run", "--source", str(phantom_paths.source),
                                      "--references", str(phantom_paths.references), "--test",
                                      str(phantom_paths.target_test), "--out", str(run), "--config", str(config),
                                      "--device", "cpu", "--progress", "jsonl"],
                          env=_torchrun_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((run / "synthetic" / "images").glob("*.png"))) == 8
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["target_test"]["source_plus_aligned_synthetic"]["mdice"] >= 0
    assert (run / "segmenter" / "exported" / "model.json").is_file()
    assert not [p for p in run.rglob("*") if p.name.startswith(".") and p.name != ".alignflow.lock"]


def test_commands_that_run_in_one_process_refuse_torchrun(tmp_path, monkeypatch, capsys):
    from AlignFlowLib.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["synthesize", "--run", str(tmp_path / "run"), "--device", "cpu", "--progress", "jsonl"]) == 2
    assert "runs in one process; start it without torchrun" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
