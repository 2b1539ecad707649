"""Run the `alignflow` CLI with a fault at an exact moment: SIGKILL, or a full disk (ENOSPC), at the N-th call of
one library function.

Some steps (writing synthetic pairs, exporting the segmenter, writing metrics) take milliseconds,
so a kill at a random time almost never lands inside them; this lands there every time.

    python bench/fault_injection.py --at AlignFlowLib.data.folders:write_png --call 9 --fault kill -- run --source …

The function is replaced in the module that calls it (the name the caller looks up), for this process only; the
library itself has no hook for this.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install_fault(target: str, call: int, fault: str) -> None:
    """Make the `call`-th call of `module:function` kill this process (SIGKILL, no clean-up at all) or raise the
    error a full disk raises, before the function runs."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    original = getattr(module, attribute)
    calls = 0

    @functools.wraps(original)
    def faulty(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call:
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return original(*args, **kwargs)

    setattr(module, attribute, faulty)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", required=True, help="module:function, as the calling module names it")
    parser.add_argument("--call", type=int, default=1, help="which call (1 = the first) faults")
    parser.add_argument("--fault", choices=("kill", "enospc"), default="kill")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the alignflow command line")
    args = parser.parse_args(argv)
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    sys.path.insert(0, str(REPO))
    install_fault(args.at, args.call, args.fault)
    from AlignFlowLib.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main())
