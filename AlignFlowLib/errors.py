"""Errors that the CLI turns into a one-line message and a documented exit code.

Exit codes (also in README and `alignflow --help`):
    0  success
    1  unexpected internal error (a bug: please report it with the run folder's events.jsonl)
    2  command-line usage error (unknown option, missing argument)
    3  bad input data: a missing, empty or unreadable file or folder, mismatched image/mask, bad mask values
    4  run-folder problem: nothing to resume, a checkpoint that does not load, an incompatible run, a folder in use
    5  training diverged (a non-finite loss)
    130 cancelled (Ctrl-C / SIGINT / SIGTERM / cancel file / parent gone); the run folder stays consistent and resumable
"""

from __future__ import annotations

from pathlib import Path


class AlignFlowError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if path is not None else message)


class UsageError(AlignFlowError):
    """A command-line value that parses but means nothing (e.g. an unknown `--set` option)."""

    exit_code = 2


class InputDataError(AlignFlowError):
    """The user's data is missing or malformed; the message names the file and the problem."""

    exit_code = 3


class RunFolderError(AlignFlowError):
    """A run folder cannot be resumed or a checkpoint cannot be loaded."""

    exit_code = 4


class TrainingDivergedError(AlignFlowError):
    """A loss became NaN or infinite."""

    exit_code = 5


class CancelledByUser(AlignFlowError):
    """The job was interrupted; what was saved stays valid."""

    exit_code = 130


def choose(name: str, value: str, choices: dict | list | tuple):
    """Look up a string option, failing with a message that lists the valid choices."""
    if value in choices:
        return choices[value] if isinstance(choices, dict) else value
    valid = ", ".join(sorted(choices))
    raise AlignFlowError(f"unknown {name} {value!r}; choose one of: {valid}")
