"""The CLI contract: exit codes, one-line errors naming the file, JSONL events, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from AlignFlowLib.cli import main
from AlignFlowLib.config import to_dict

from conftest import REPO, tiny_config


def _pair_folder(root: Path, count: int = 3, size=(40, 48)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{index}.png")
        mask = np.zeros(size, np.uint8)
        mask[10:20, 10:25] = 255
        Image.fromarray(mask).save(root / "masks" / f"{index}.png")
    return root


def _run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def _assert_one_line_error(lines: list[str], *fragments: str) -> None:
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert not any("Traceback" in line for line in lines)


def test_missing_source_folder(tmp_path, capsys):
    code, lines = _run_cli(capsys, "train", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "run"),
                           "--device", "cpu")
    assert code == 3
    _assert_one_line_error(lines, str(tmp_path / "nope"))


def test_empty_source_folder(tmp_path, capsys):
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "masks").mkdir()
    code, lines = _run_cli(capsys, "train", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "run"))
    assert code == 3
    _assert_one_line_error(lines, "src")


def test_image_without_mask(tmp_path, capsys):
    source = _pair_folder(tmp_path / "src")
    (source / "masks" / "1.png").unlink()
    code, lines = _run_cli(capsys, "train", "--source", str(source), "--out", str(tmp_path / "run"))
    assert code == 3
    _assert_one_line_error(lines, "1.png")


def test_mismatched_image_and_mask_sizes(tmp_path, capsys):
    source = _pair_folder(tmp_path / "src")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(source / "masks" / "2.png")
    code, lines = _run_cli(capsys, "train", "--source", str(source), "--out", str(tmp_path / "run"))
    assert code == 3
    _assert_one_line_error(lines, "2.png")


def test_multi_label_mask(tmp_path, capsys):
    source = _pair_folder(tmp_path / "src")
    labels = np.zeros((40, 48), np.uint8)
    labels[:, 16:32], labels[:, 32:] = 1, 2
    Image.fromarray(labels).save(source / "masks" / "0.png")
    code, lines = _run_cli(capsys, "train", "--source", str(source), "--out", str(tmp_path / "run"))
    assert code == 3
    _assert_one_line_error(lines, "0.png", "label")


def test_unreadable_image(tmp_path, capsys):
    source = _pair_folder(tmp_path / "src")
    (source / "images" / "1.png").write_bytes(b"not a png at all")
    code, lines = _run_cli(capsys, "train", "--source", str(source), "--out", str(tmp_path / "run"))
    assert code == 3
    _assert_one_line_error(lines, "1.png")


def test_zero_references(tmp_path, capsys):
    source = _pair_folder(tmp_path / "src")
    (tmp_path / "refs").mkdir()
    code, lines = _run_cli(capsys, "run", "--source", str(source), "--references", str(tmp_path / "refs"),
                           "--out", str(tmp_path / "run"), "--preset", "demo")
    assert code == 3
    _assert_one_line_error(lines, "refs")


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--bogus"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("assignment, fragment", [("align.bogus=1", "has no option 'bogus'"),
                                                   ("align.num_steps=many", "not a valid int"),
                                                   ("learning_rate=1", "expected section.field=value")])
def test_bench_override_errors_are_usage_errors(tmp_path, capsys, assignment, fragment):
    code, lines = _run_cli(capsys, "bench", "polyp", "--data", str(tmp_path), "--set", assignment,
                           "--device", "cpu")
    assert code == 2
    _assert_one_line_error(lines, fragment)


def test_align_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, lines = _run_cli(capsys, "align", "--run", str(tmp_path), "--references", str(tmp_path))
    assert code == 4
    _assert_one_line_error(lines, "config.json")


def _config_file(tmp_path: Path, **kwargs) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"config": to_dict(tiny_config(**kwargs))}))
    return path


def test_train_kill_and_resume(tmp_path, phantom_paths):
    """SIGKILL mid-stage, then --resume: the run completes and its checkpoints load."""
    from AlignFlowLib.checkpoint import load_checkpoint

    config = _config_file(tmp_path, image_steps=200, mask_steps=20, checkpoint_every=10)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "AlignFlowLib.cli", "train", "--source", str(phantom_paths.source),
               "--out", str(run_dir), "--config", str(config), "--device", "cpu", "--progress", "jsonl"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    checkpoint = run_dir / "checkpoints" / "image_generator_last.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 20:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 20 <= killed_at < 200

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert events[-1]["event"] == "done"
    assert any(e.get("message", "").startswith(f"resumed from step {killed_at}") for e in events)
    progress = [e for e in events if e["event"] == "progress" and e["stage"] == "image_generator"]
    assert progress[0]["step"] > killed_at and progress[-1]["step"] == 200
    assert all({"stage", "step", "total", "eta_s"} <= set(e) for e in progress)
    assert load_checkpoint(checkpoint)["step"] == 200
    assert load_checkpoint(run_dir / "checkpoints" / "mask_generator_last.pt")["step"] == 20
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def test_refuses_to_overwrite_a_run_without_resume(tmp_path, phantom_paths, capsys):
    config = _config_file(tmp_path, image_steps=2, mask_steps=2)
    args = ["train", "--source", str(phantom_paths.source), "--out", str(tmp_path / "run"), "--config",
            str(config), "--device", "cpu"]
    assert main(args) == 0
    code, lines = _run_cli(capsys, *args)
    assert code == 4
    _assert_one_line_error(lines, "--resume")


def test_sigterm_cancels_cleanly_with_exit_130(tmp_path, phantom_paths):
    """The Slicer module's Cancel sends SIGTERM: the CLI must end with an `error` event, exit 130, no temp files."""
    config = _config_file(tmp_path, image_steps=400, mask_steps=2, checkpoint_every=5)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "AlignFlowLib.cli", "train", "--source", str(phantom_paths.source),
               "--out", str(run_dir), "--config", str(config), "--device", "cpu", "--progress", "jsonl"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run_dir / "checkpoints" / "image_generator_last.pt").is_file():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "error" and last["exit_code"] == 130 and "--resume" in last["message"]
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    assert '"exit_code": 130' in (run_dir / "events.jsonl").read_text()
