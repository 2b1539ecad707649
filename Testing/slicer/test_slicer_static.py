"""Static checks of the Slicer side: the .ui against the parameter node and the widget code, the CMake lists
against the files on disk, the extension metadata, and no heavy import at the top of any Slicer-side file."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_helpers import MODULE_DIR, REPO

UI_FILE = MODULE_DIR / "Resources" / "UI" / "AlignFlowSlicer.ui"
MODULE_FILE = MODULE_DIR / "AlignFlowSlicer.py"
EFFECT_FILE = MODULE_DIR / "SegmentEditorAlignFlowLib" / "SegmentEditorEffect.py"
PARAMETERS_FILE = MODULE_DIR / "AlignFlowSlicerLib" / "parameters.py"
HEAVY = {"torch", "monai", "AlignFlowLib"}  # AlignFlowLib's package import pulls in torch


def _ui() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _parameter_fields() -> set[str]:
    tree = ast.parse(PARAMETERS_FILE.read_text())
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AlignFlowSlicerParameterNode"]
    assert classes, "AlignFlowSlicerParameterNode not found"
    return {n.target.id for n in classes[0].body if isinstance(n, ast.AnnAssign)}


def _cmake_list(path: Path, variable: str) -> list[str]:
    text = re.sub(r"#[^\n]*", "", path.read_text())
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set in {path}"
    return match.group(1).split()


def test_ui_parses_and_names_are_unique():
    root = _ui()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names in the .ui"


def test_every_slicer_parameter_name_is_a_parameter_node_field():
    fields = _parameter_fields()
    bound = {p.find("string").text for p in _ui().iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound, "no SlicerParameterName in the .ui"
    assert bound <= fields, f"not parameter-node fields: {sorted(bound - fields)}"
    # Every field is shown somewhere: bound in the .ui, or one of the two node lists the widget syncs by hand.
    assert fields - bound == {"sourceVolumes", "referenceVolumes"}


def test_every_widget_the_code_uses_exists_in_the_ui():
    names = {w.get("name") for w in _ui().iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    used |= set(re.findall(r'"(\w+(?:Button|ComboBox|Label|Edit|SpinBox|CheckBox))"', MODULE_FILE.read_text()))
    assert used, "the widget uses no ui elements?"
    assert used <= names, f"missing in the .ui: {sorted(used - names)}"


def test_scene_aware_widgets_get_the_scene():
    root = _ui()
    mrml = {w.get("name") for w in root.iter("widget") if w.get("class", "").startswith("qMRML")} - {"AlignFlowSlicer"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert mrml and mrml == connected


def test_library_cmake_list_names_exactly_the_files_on_disk():
    listed = _cmake_list(REPO / "CMakeLists.txt", "ALIGNFLOWLIB_PYTHON_SCRIPTS")
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "AlignFlowLib").rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert sorted(listed) == on_disk, (f"add to CMakeLists.txt: {sorted(set(on_disk) - set(listed))}; "
                                       f"remove: {sorted(set(listed) - set(on_disk))}")
    data_files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "AlignFlowLib").rglob("*")
                        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    assert sorted(_cmake_list(REPO / "CMakeLists.txt", "ALIGNFLOWLIB_PYTHON_RESOURCES")) == data_files


def test_module_cmake_lists_name_exactly_the_files_on_disk():
    cmake = MODULE_DIR / "CMakeLists.txt"
    expand = lambda items: sorted(i.replace("${MODULE_NAME}", "AlignFlowSlicer") for i in items)  # noqa: E731
    files = [p for p in MODULE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.relative_to(MODULE_DIR).parts[0] != "Testing"]
    scripts = sorted(p.relative_to(MODULE_DIR).as_posix() for p in files if p.suffix == ".py")
    resource_suffixes = (".png", ".ui", ".nrrd", ".mrml")  # .nrrd/.mrml: the Sample Data files
    resources = sorted(p.relative_to(MODULE_DIR).as_posix() for p in files if p.suffix in resource_suffixes)
    assert expand(_cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")) == scripts
    assert expand(_cmake_list(cmake, "MODULE_PYTHON_RESOURCES")) == resources
    assert {p.suffix for p in files} <= {".py", ".txt", *resource_suffixes}  # nothing unlisted ships silently
    text = cmake.read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    tests = MODULE_DIR / "Testing" / "Python"
    registered = re.findall(r"slicer_add_python_unittest\(SCRIPT (\S+)\)", (tests / "CMakeLists.txt").read_text())
    assert sorted(registered) == sorted(p.name for p in tests.glob("*.py"))


def test_extension_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key} \"[^\"]+\"\)", text), key
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text and 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(AlignFlowSlicer)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text
    project = re.search(r"^project\((\w+)\)", text, re.M).group(1)
    entry = json.loads((REPO / f"{project}.json").read_text())  # the index names the entry after the extension
    assert {"$schema", "category", "scm_url"} <= set(entry) and entry["category"] == "Segmentation"
    assert entry["build_dependencies"] == ["PyTorch"]
    assert "Apache License" in (REPO / "LICENSE.txt").read_text()[:200]


@pytest.mark.parametrize("name", ["AlignFlowSlicer.png", "AlignFlow.png"])
def test_icons_are_128_px_pngs(name):
    from PIL import Image

    for path in (MODULE_DIR / "Resources" / "Icons" / name, MODULE_DIR / "SegmentEditorAlignFlowLib" /
                 "SegmentEditorEffect.png"):
        with Image.open(path) as icon:
            assert icon.format == "PNG" and icon.size == (128, 128)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when the file is imported: module level, including inside module-level if/try blocks."""
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                      + [h for handler in getattr(node, "handlers", []) for h in handler.body])
    visit(ast.parse(path.read_text()).body)
    return found


@pytest.mark.parametrize("path", [MODULE_FILE, EFFECT_FILE, *sorted((MODULE_DIR / "AlignFlowSlicerLib").glob("*.py"))],
                         ids=lambda p: p.name)
def test_no_heavy_import_at_top_level(path):
    assert not _top_level_imports(path) & HEAVY


def test_heavy_import_check_catches_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ntry:\n    import torch\nexcept ImportError:\n    pass\n")
    assert _top_level_imports(bad) & HEAVY == {"torch"}


def test_module_file_stays_thin():
    assert len(MODULE_FILE.read_text().splitlines()) <= 400


def test_the_library_confines_slicer_imports_to_the_mrml_bridge():
    offenders = []
    for path in (REPO / "AlignFlowLib").rglob("*.py"):
        if "mrml" in path.relative_to(REPO / "AlignFlowLib").parts:
            continue
        imports = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Import)}
        imports |= {n.module.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        if imports & {"slicer", "vtk", "qt", "ctk", "vtkmodules"}:
            offenders.append(path.name)
    assert not offenders


def test_module_folder_alone_finds_the_library(tmp_path):
    """Docs: adding only AlignFlowSlicer/ to Additional module paths is enough; AlignFlowLib is found, not imported."""
    import subprocess
    import sys

    code = ("import sys, importlib.util; sys.path[:] = [p for p in sys.path if p not in ('', {repo!r})]; "
            "sys.path.insert(0, {module!r}); import AlignFlowSlicerLib; "
            "spec = importlib.util.find_spec('AlignFlowLib'); print(spec.origin); "
            "print('torch' in sys.modules)").format(repo=str(REPO), module=str(MODULE_DIR))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    origin, torch_loaded = out.stdout.split()
    assert Path(origin) == REPO / "AlignFlowLib" / "__init__.py"
    assert torch_loaded == "False"
