"""The validation layer at the CLI boundary (issue 10, part 1): every config field checked against what it declares,
bad options exit 2 in one line before anything is written, bad output paths exit 2, untrainable data exits 3."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from AlignFlowLib.cli import main
from AlignFlowLib.config import MultipleOf, OneOf, Range, replace, to_dict, validate
from AlignFlowLib.errors import UsageError
from AlignFlowLib.presets import PRESETS

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4, 5, 130}


def _constrained_fields(config, prefix=""):
    """(path, section object, field name, constraints) for every declared constraint in a nested config."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            yield from _constrained_fields(value, f"{prefix}{item.name}.")
        elif typing.get_origin(hints[item.name]) is typing.Annotated:
            yield f"{prefix}{item.name}", item.name, typing.get_args(hints[item.name])[1:]


def _violating(constraint, current):
    if isinstance(constraint, Range):
        if constraint.low is not None:
            low = constraint.low if constraint.open_low else constraint.low - 1
            return type(current if not isinstance(current, tuple) else current[0])(low)
        return type(current)(constraint.high + 1)
    if isinstance(constraint, OneOf):
        return "not-a-choice" if isinstance(constraint.choices[0], str) else max(constraint.choices) + 7
    if isinstance(constraint, MultipleOf):
        return current + 1
    raise AssertionError(constraint)


def _with(config, path: str, value):
    head, _, rest = path.partition(".")
    if not rest:
        return replace(config, **{head: value})
    return replace(config, **{head: _with(getattr(config, head), rest, value)})


CASES = [(path, c) for path, _, constraints in _constrained_fields(PRESETS["demo"]) for c in constraints]


@pytest.mark.parametrize("path,constraint", CASES, ids=[f"{p}:{type(c).__name__}" for p, c in CASES])
def test_every_declared_constraint_rejects_a_violating_value(path, constraint):
    config = PRESETS["demo"]
    current = config
    for part in path.split("."):
        current = getattr(current, part)
    bad = _violating(constraint, current)
    bad = (bad,) + tuple(current[1:]) if isinstance(current, tuple) else bad
    with pytest.raises(UsageError, match=rf"^{path.replace('.', '[.]')} = "):
        validate(_with(config, path, bad))


def test_presets_are_valid_and_types_are_checked():
    for config in PRESETS.values():
        validate(config)
    demo = PRESETS["demo"]
    for path, value, words in (("segmenter.augment", 1, "true or false"), ("segmenter.num_steps", 3.0, "whole"),
                               ("align.learning_rate", float("inf"), "finite"), ("image_generator.channels", (),
                                                                                   "non-empty"),
                               ("align.grad_last_steps", 99, "sampler.num_steps"),
                               ("synthesis.start_time", 0.5, "mask_source is source"),
                               ("image_generator.norm_num_groups", 5, "divisor"),
                               ("mask_generator.num_head_channels", 24, "attended widths")):
        with pytest.raises(UsageError, match=words):
            validate(_with(demo, path, value))


def _error_line(capsys) -> dict:
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert lines and lines[-1]["event"] == "error" and "\n" not in lines[-1]["message"]
    return lines[-1]


@pytest.mark.parametrize("option,value,words", [
    ("--steps", "-5", "--steps -5: image_generator.num_steps = -5: must be ≥ 1"),
    ("--steps", "0", "--steps 0"),
    ("--image-size", "40", "multiple of 16"),
    ("--num", "0", "--num 0: synthesis.num_pairs"),
    ("--seed", "-1", "--seed -1"),
    ("--mask-steps", "99999999999", "≤"),
])
def test_bad_option_values_exit_2_before_anything_is_written(tmp_path, capsys, phantom_paths, option, value, words):
    run = tmp_path / "run"
    code = main(["train", "--source", str(phantom_paths.source), "--out", str(run), option, value,
                 "--progress", "jsonl"])
    assert code == 2
    assert words in _error_line(capsys)["message"]
    assert not run.exists()


def test_segmenter_train_steps_are_the_segmenters(tmp_path, capsys, phantom_paths):
    assert main(["segmenter", "train", "--source", str(phantom_paths.source), "--out", str(tmp_path / "seg"),
                 "--steps", "0", "--progress", "jsonl"]) == 2
    assert _error_line(capsys)["message"].startswith("--steps 0: segmenter.num_steps = 0")


def test_bad_output_paths_get_one_line_errors(tmp_path, capsys, phantom_paths):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    other = tmp_path / "seg"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"data": {}, "segmenter": {}, "source": "s"}))
    cases = [
        (["train", "--source", str(phantom_paths.source), "--out", str(a_file)], "exists and is a file"),
        (["train", "--source", str(phantom_paths.source), "--out", str(phantom_paths.source / "run")],
         "inside the --source folder"),
        (["train", "--source", str(phantom_paths.source), "--out", str(other)], "`alignflow segmenter train`"),
        (["segmenter", "evaluate", "--model", str(tmp_path), "--data", str(phantom_paths.source), "--out",
          str(tmp_path)], "is a folder; name the file"),
        (["train", "--source", str(phantom_paths.source), "--out", str(a_file / "run")], "cannot be created"),
    ]
    for args, words in cases:
        assert main(args + ["--progress", "jsonl"]) == 2, args
        assert words in _error_line(capsys)["message"], args
    assert a_file.read_text() == "x" and sorted(p.name for p in other.iterdir()) == ["config.json"]


def _pair_folder(root: Path, images: list[np.ndarray], masks: list[np.ndarray]) -> Path:
    from PIL import Image

    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for index, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index}.png")
    return root


def test_untrainable_data_exits_3_naming_the_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    square = np.zeros((32, 32), np.uint8)
    square[8:20, 8:20] = 255
    empty = _pair_folder(tmp_path / "empty", images, [np.zeros((32, 32), np.uint8)] * 3)
    copies = _pair_folder(tmp_path / "copies", [images[0]] * 3, [square] * 3)
    for folder, words in ((empty, "has any foreground"), (copies, "only copies of one image")):
        for command in (["train", "--out", str(tmp_path / f"run-{folder.name}")],
                        ["segmenter", "train", "--out", str(tmp_path / f"seg-{folder.name}")]):
            assert main(command + ["--source", str(folder), "--preset", "demo", "--device", "cpu",
                                   "--progress", "jsonl"]) == 3
            message = _error_line(capsys)["message"]
            assert message.startswith(str(folder)) and words in message
        assert not (tmp_path / f"seg-{folder.name}").exists()


def test_a_hand_edited_run_config_is_checked_when_read_back(tmp_path, capsys):
    from AlignFlowLib.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.save_config(PRESETS["demo"], {"source": "s"})
    stored = json.loads(run.config_path.read_text())
    stored["config"]["synthesis"]["batch_size"] = 0
    run.config_path.write_text(json.dumps(stored))
    assert main(["synthesize", "--run", str(run.root), "--progress", "jsonl"]) == 2
    message = _error_line(capsys)["message"]
    assert message.startswith(str(run.config_path)) and "synthesis.batch_size = 0" in message
    with pytest.raises(UsageError):
        run.save_config(_with(PRESETS["demo"], "align.batch_size", 1), {})


# Random options and random small files through the CLI: a documented exit code, never a traceback, and the run
# folder either never created or resumable (its config.json loads).

OPTIONS = st.fixed_dictionaries({}, optional={
    "--steps": st.integers(-10, 10**9), "--mask-steps": st.integers(-10, 10**9),
    "--image-size": st.integers(-64, 9000), "--num": st.integers(-5, 10**8), "--seed": st.integers(-5, 2**33),
    "--channels": st.sampled_from(["1", "3"]), "--preset": st.sampled_from(["demo", "default", "nope"]),
})
FILES = st.lists(st.tuples(st.sampled_from(["images", "masks"]), st.sampled_from(["a.png", "b.png", "c.nrrd"]),
                           st.binary(max_size=64)), max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=OPTIONS, files=FILES)
def test_random_options_and_files_end_cleanly(tmp_path_factory, capsys, options, files):
    root = tmp_path_factory.mktemp("random")
    source = root / "source"
    for sub, name, data in files:
        (source / sub).mkdir(parents=True, exist_ok=True)
        (source / sub / name).write_bytes(data)
    run = root / "run"
    args = ["train", "--source", str(source), "--out", str(run), "--device", "cpu", "--progress", "jsonl"]
    for option, value in options.items():
        args += [option, str(value)]
    code = main(args)
    out = capsys.readouterr()
    assert code in DOCUMENTED_EXIT_CODES - {0}, (args, out.out[-500:])
    assert "Traceback" not in out.err
    assert json.loads(out.out.splitlines()[-1])["event"] == "error"
    if run.exists() and (run / "config.json").exists():
        from AlignFlowLib.run_folder import RunFolder

        RunFolder(run).load_config()  # resumable: the stored configuration is valid
    if code == 2:
        assert not run.exists()


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """ENOSPC in the middle of a write: the earlier checkpoint still loads, no temporary file is left."""
    import errno
    import os

    import torch

    from AlignFlowLib import atomic, checkpoint

    path = tmp_path / "checkpoints" / "image_generator_last.pt"
    checkpoint.save_checkpoint(path, {"step": 10, "weights": torch.ones(3)})
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(path, {"step": 20, "weights": torch.zeros(3)})
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    kept = checkpoint.load_checkpoint(path)
    assert kept["step"] == 10 and torch.equal(kept["weights"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file is written")
def test_cli_reports_a_full_disk_as_a_run_folder_problem_and_resumes(tmp_path, monkeypatch, capsys, phantom_paths):
    import errno
    import os

    from AlignFlowLib import atomic, checkpoint
    from AlignFlowLib.config import to_dict
    from conftest import tiny_config

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"config": to_dict(tiny_config(image_steps=20, mask_steps=4, checkpoint_every=10))}))
    args = ["train", "--source", str(phantom_paths.source), "--out", str(tmp_path / "run"), "--config", str(config),
            "--device", "cpu", "--progress", "jsonl"]
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # the second image-generator checkpoint finds the disk full
        if "image_generator_last" in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    assert main(args) == 4
    assert "no space left on the device" in _error_line(capsys)["message"]
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert checkpoint.load_checkpoint(tmp_path / "run" / "checkpoints" / "image_generator_last.pt")["step"] == 10
    assert main(args + ["--resume"]) == 0


NUMBERS = st.one_of(st.integers(-10, 10**10), st.floats(allow_nan=True, allow_infinity=True, width=32))


def _run_folder_without_checkpoints(root: Path) -> Path:
    from AlignFlowLib.run_folder import RunFolder

    run = RunFolder(root / "run")
    run.save_config(PRESETS["demo"], {"source": str(root / "nowhere")})
    return run.root


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["synthesize", "align", "segmenter train", "segmenter evaluate", "segmenter predict"]),
       values=st.lists(NUMBERS, min_size=3, max_size=3), files=FILES, existing_run=st.booleans())
def test_random_values_for_every_other_command_end_cleanly(tmp_path_factory, capsys, command, values, files,
                                                           existing_run):
    """The other commands with random numbers for their numeric options and random small files as inputs: a
    documented exit code, no traceback, and nothing new on disk after a usage error."""
    root = tmp_path_factory.mktemp("random")
    data = root / "data"
    for sub, name, blob in files:
        (data / sub).mkdir(parents=True, exist_ok=True)
        (data / sub / name).write_bytes(blob)
    run = _run_folder_without_checkpoints(root) if existing_run else root / "run"
    a, b, c = (str(int(v)) if isinstance(v, float) and v.is_integer() and abs(v) < 1e12 else str(v)
               for v in values)
    args = {
        "synthesize": ["synthesize", "--run", str(run), "--num", a, "--sampler-steps", b, "--guidance", c],
        "align": ["align", "--run", str(run), "--references", str(data), "--align-steps", a],
        "segmenter train": ["segmenter", "train", "--source", str(data), "--out", str(root / "seg"), "--steps", a,
                            "--ratio", c, "--image-size", b],
        "segmenter evaluate": ["segmenter", "evaluate", "--model", str(data), "--data", str(data)],
        "segmenter predict": ["segmenter", "predict", "--model", str(data), "--volume", str(data / "images" / "a.png"),
                              "--out", str(root / "label.nrrd")],
    }[command]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    try:
        code = main(args + ["--device", "cpu", "--progress", "jsonl"])
    except SystemExit as exit_:  # argparse: a value that is not a number at all
        code = exit_.code
    out = capsys.readouterr()
    assert code in DOCUMENTED_EXIT_CODES - {0}, (args, out.out[-500:], out.err[-500:])
    assert "Traceback" not in out.err
    after = sorted(p.relative_to(root) for p in root.rglob("*"))
    new = {str(p) for p in set(after) - set(before)}
    if code == 2:  # nothing new, except the log and lock of a run folder that already existed
        assert new <= ({"run/events.jsonl", "run/.alignflow.lock"} if existing_run else set()), (args, new)
    if existing_run:
        from AlignFlowLib.run_folder import RunFolder

        RunFolder(run).load_config()  # still resumable
