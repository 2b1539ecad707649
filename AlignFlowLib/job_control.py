"""What keeps a long `alignflow` job safe when it is driven by another program (the Slicer module, a web front end):
a clean stop on request, a stop when that program dies, and one writer per run folder.

- Cancel file: the runner names a file in ALIGNFLOW_CANCEL_FILE; when it appears the job stops as on Ctrl-C (exit 130,
  last atomic checkpoint kept). Unlike a signal this reaches the worker even through Slicer's `PythonSlicer`
  launcher (which dies at once on SIGTERM) and works the same on Windows.
- Parent watchdog: ALIGNFLOW_PARENT_PID names the program that started the job; if it disappears (Slicer crashed or
  was killed) the job stops cleanly instead of holding the GPU for hours.
- Run-folder lock: an OS lock on RUN/.alignflow.lock, released by the OS when the process dies, so a second `--resume`
  on the same folder gets a one-line error instead of a second writer.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from pathlib import Path
from typing import IO, Optional

from .errors import RunFolderError

CANCEL_FILE_ENV = "ALIGNFLOW_CANCEL_FILE"
PARENT_PID_ENV = "ALIGNFLOW_PARENT_PID"
LOCK_NAME = ".alignflow.lock"
POLL_S = 0.25


def on_windows() -> bool:
    """One place that asks, so the Windows paths can be driven by tests on other systems."""
    return os.name == "nt"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still exists (POSIX: signal 0; Windows: an open handle that has not been signalled)."""
    if pid <= 0:
        return False
    if on_windows():
        import ctypes

        synchronize, wait_timeout = 0x00100000, 0x00000102
        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(synchronize, False, pid)
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == wait_timeout
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class StopWatcher:
    """A daemon thread that interrupts the main thread (KeyboardInterrupt, i.e. the CLI's clean stop) when the cancel
    file appears or the parent process is gone. `reason` says which, for the log."""

    def __init__(self, cancel_file: Optional[Path] = None, parent_pid: Optional[int] = None, poll_s: float = POLL_S):
        self.cancel_file = cancel_file
        self.parent_pid = parent_pid
        self.poll_s = poll_s
        self.reason: Optional[str] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="alignflow-stop-watcher", daemon=True)

    @classmethod
    def from_environment(cls) -> Optional[StopWatcher]:
        cancel = os.environ.get(CANCEL_FILE_ENV)
        parent = os.environ.get(PARENT_PID_ENV, "")
        if not cancel and not parent.strip():
            return None
        try:
            parent_pid = int(parent) if parent.strip() else None
        except ValueError:
            parent_pid = None  # a malformed value must not stop a job; the cancel file still works
        return cls(Path(cancel) if cancel else None, parent_pid)

    def start(self) -> StopWatcher:
        """Start watching. Call from the main thread: SIGINT gets Python's handler back if it was inherited as ignored
        (a job started in the background by a non-interactive shell), since `_thread.interrupt_main` does nothing
        while SIGINT is ignored, and a cancel would then silently not happen."""
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None)):
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            if self.cancel_file is not None and self.cancel_file.exists():
                self.reason = "cancel requested"
            elif self.parent_pid is not None and not pid_alive(self.parent_pid):
                self.reason = f"the program that started this job (pid {self.parent_pid}) is gone"
            else:
                continue
            _thread.interrupt_main()
            return


class RunFolderLock:
    """An exclusive, non-blocking OS lock on RUN/.alignflow.lock; the file also records the holder's pid."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._handle: Optional[IO[str]] = None
        self._created = False

    def acquire(self) -> RunFolderLock:
        self._created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(f"is in use by another alignflow job (pid {holder}); wait for it to finish or "
                                 "cancel it, then resume", self.path.parent) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            _unlock(self._handle)
        finally:
            self._handle.close()
            self._handle = None
        folder = self.path.parent
        if self._created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            # This job made the folder and wrote nothing else into it (it failed on its input): leave no trace.
            self.path.unlink(missing_ok=True)
            folder.rmdir()

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(handle: IO[str]) -> None:
    if on_windows():
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(handle: IO[str]) -> None:
    if on_windows():
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


__all__ = ["CANCEL_FILE_ENV", "PARENT_PID_ENV", "RunFolderLock", "StopWatcher", "on_windows", "pid_alive"]
