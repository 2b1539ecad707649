"""The AlignFlow module's Qt-free parts: the logic (MRML in/out, CLI commands, process runner) and the dependency
check. The parameter node lives in `parameters.py`, which needs the Slicer application."""

import importlib.util
import os
import sys


def ensure_library_on_path() -> None:
    """Make `AlignFlowLib` importable. In a built extension it sits beside the module (already on sys.path); when the
    module folder of a source checkout is added to Slicer's Additional module paths, the library is one level up.
    Only looked up, never imported (importing it would pull in torch before the dependency check)."""
    if importlib.util.find_spec("AlignFlowLib") is not None:
        return
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(checkout, "AlignFlowLib", "__init__.py")):
        sys.path.append(checkout)


ensure_library_on_path()

from .logic import AlignFlowLogic, missing_requirements  # noqa: E402

__all__ = ["AlignFlowLogic", "ensure_library_on_path", "missing_requirements"]
