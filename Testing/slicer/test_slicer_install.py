"""Dependency install into Slicer's Python (issue 9, defect 13): versions, torch only through the PyTorch extension
with our requirement and its result checked, --no-deps for the rest, offline wheel folders, restart when needed."""

from __future__ import annotations

import pytest
from packaging.version import Version

from slicer_helpers import MODULE_DIR  # noqa: F401  (puts AlignFlowSlicer on sys.path)

from AlignFlowSlicerLib.install import (PIP_REQUIREMENTS, TORCH_REQUIREMENT, DependencyInstaller,  # noqa: E402
                                        unmet)


class TorchLogic:
    """The PyTorch extension's PyTorchUtilsLogic as far as we use it: installTorch returns the module or None."""

    def __init__(self, succeeds: bool = True):
        self.calls: list[dict] = []
        self.succeeds = succeeds

    def installTorch(self, askConfirmation=True, torchVersionRequirement=None, **kwargs):
        self.calls.append({"askConfirmation": askConfirmation, "torchVersionRequirement": torchVersionRequirement})
        return object() if self.succeeds else None


def versions(**installed):
    return lambda name: Version(installed[name]) if name in installed else None


def test_old_versions_count_as_unmet_not_only_missing_ones():
    requirements = ((TORCH_REQUIREMENT, "torch"), ("monai>=1.4,<2", "monai"), ("einops>=0.7", "einops"))
    needs = unmet(requirements, versions(torch="2.5.1", monai="1.2.0", einops="0.8.0"))
    assert [n.name for n in needs] == ["monai"] and "1.2.0 installed" in needs[0].describe()
    assert [n.name for n in unmet(requirements, versions(einops="0.8.0"))] == ["torch", "monai"]
    assert unmet(requirements, versions(torch="2.13.0+cpu", monai="1.5.1", einops="0.8.1")) == []


def test_torch_comes_from_the_pytorch_extension_with_our_requirement():
    pip, torch = [], TorchLogic()
    needs = unmet(((TORCH_REQUIREMENT, "torch"), ("monai>=1.4,<2", "monai")), versions())
    DependencyInstaller(pip.append, torch, loaded_modules=[]).install(needs)
    assert torch.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.3"}]
    assert pip == ['"monai>=1.4,<2" --no-deps'], "MONAI must not pull in a torch of its own"
    assert not any("torch" in call for call in pip)


def test_no_cpu_only_fallback_and_a_failed_torch_install_is_an_error():
    needs = unmet(((TORCH_REQUIREMENT, "torch"),), versions())
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        DependencyInstaller([].append, None).install(needs)
    pip: list[str] = []
    with pytest.raises(RuntimeError, match="could not install torch>=2.3"):
        DependencyInstaller(pip.append, TorchLogic(succeeds=False)).install(needs)
    assert pip == []


def test_offline_install_uses_the_local_wheel_folder(tmp_path):
    pip: list[str] = []
    needs = unmet((("einops>=0.7", "einops"),), versions())
    DependencyInstaller(pip.append, None, tmp_path).install(needs)
    assert pip == [f'"einops>=0.7" --no-deps --no-index --find-links "{tmp_path}"']
    with pytest.raises(RuntimeError, match="does not exist"):
        DependencyInstaller(pip.append, None, tmp_path / "missing").install(needs)
    with pytest.raises(RuntimeError, match="offline install cannot fetch PyTorch"):
        DependencyInstaller(pip.append, TorchLogic(), tmp_path).install(unmet(((TORCH_REQUIREMENT, "torch"),),
                                                                               versions()))


def test_upgrading_an_already_imported_package_asks_for_a_restart():
    needs = unmet((("monai>=1.4,<2", "monai"), ("einops>=0.7", "einops")), versions(monai="1.2.0"))
    result = DependencyInstaller([].append, None, loaded_modules=["monai"]).install(needs)
    assert result.restart_needed and result.restart_because == ["monai 1.2.0 was already loaded"]
    fresh = DependencyInstaller([].append, None, loaded_modules=[]).install(needs)
    assert not fresh.restart_needed and fresh.installed == ["monai>=1.4,<2", "einops>=0.7"]


def test_slicer_own_packages_are_never_installed():
    needs = unmet((("SimpleITK>=9", "SimpleITK"),), versions(SimpleITK="2.3.0"))
    with pytest.raises(RuntimeError, match="Slicer's own package"):
        DependencyInstaller([].append, None).install(needs)
    assert all(not text.lower().startswith(("simpleitk", "numpy", "torch")) for text, _ in PIP_REQUIREMENTS)


def test_this_environment_meets_the_requirements_it_is_tested_with():
    assert unmet() == [], [n.describe() for n in unmet()]
