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


# The Python each Slicer release ships: 5.6–5.8 are on 3.9, 5.10 moved to 3.12.
SLICER_PYTHON = {"5.6": (3, 9), "5.7": (3, 9), "5.8": (3, 9), "5.9": (3, 12), "5.10": (3, 12)}
SHIPPED_PY = sorted(p for folder in (REPO / "AlignFlowLib", MODULE_DIR) for p in folder.rglob("*.py")
                    if "__pycache__" not in p.parts)


def _declared_minimum() -> tuple[str, tuple[int, int]]:
    logic = ast.parse((MODULE_DIR / "AlignFlowSlicerLib" / "logic.py").read_text())
    values = {t.id: ast.literal_eval(n.value) for n in logic.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("MINIMUM_SLICER_VERSION", "MINIMUM_PYTHON")}
    cmake = re.search(r'set\(ALIGNFLOW_MINIMUM_SLICER_VERSION "([\d.]+)"\)', (REPO / "CMakeLists.txt").read_text())
    assert cmake and cmake.group(1) == values["MINIMUM_SLICER_VERSION"], "CMakeLists.txt and logic.py disagree"
    assert "VERSION_LESS ALIGNFLOW_MINIMUM_SLICER_VERSION" in (REPO / "CMakeLists.txt").read_text()
    assert SLICER_PYTHON[values["MINIMUM_SLICER_VERSION"]] == tuple(values["MINIMUM_PYTHON"])
    return values["MINIMUM_SLICER_VERSION"], tuple(values["MINIMUM_PYTHON"])


def _vermin_violations(paths, target: tuple[int, int]) -> list[str]:
    """Syntax and standard-library uses that need a newer Python than `target` (vermin)."""
    import subprocess
    import sys

    vermin = Path(sys.executable).parent / "vermin"
    out = subprocess.run([str(vermin), "--no-tips", "--violations", "--no-parse-comments", "--format", "parsable",
                          f"--target={target[0]}.{target[1]}-", *map(str, paths)],
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if re.search(r":\d+:", line)]
    assert out.returncode in (0, 1) and (out.returncode == 0) == (not lines), out.stdout + out.stderr
    return lines


TYPE_NAMES = {"None", "int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "type", "object"}


def _looks_like_type(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):  # a class name, not a CONSTANT
        return node.id in TYPE_NAMES or (node.id[:1].isupper() and not node.id.isupper())
    if isinstance(node, ast.Attribute):
        return node.attr[:1].isupper() and not node.attr.isupper()
    if isinstance(node, ast.Subscript):
        return _looks_like_type(node.value)
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)


def _runtime_union_types(path: Path) -> list[int]:
    """Lines where `X | Y` of types is evaluated when the file runs (PEP 604 needs 3.10): in ordinary expressions,
    and in annotations unless `from __future__ import annotations` keeps them strings and nothing evaluates them
    (typing.get_type_hints, as config loading and Slicer's parameterNodeWrapper do)."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations"
                 for a in n.names) for n in tree.body)
    evaluated = "get_type_hints" in text or "@parameterNodeWrapper" in text
    class_fields = {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body
                    if isinstance(f, ast.AnnAssign) for n in ast.walk(f.annotation)}
    skip: set[int] = set()
    for node in ast.walk(tree):
        for ann in ([node.annotation] if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation else []) + \
                ([node.returns] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns
                 else []):
            skip |= {id(n) for n in ast.walk(ann)} if future else set()
    if evaluated:  # get_type_hints evaluates class fields' annotations, never functions'
        skip -= class_fields
    return sorted({n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                   and id(n) not in skip and _looks_like_type(n.left) and _looks_like_type(n.right)})


def test_module_and_library_parse_and_import_on_the_oldest_supported_slicer_python():
    """Slicer 5.6–5.8 run Python 3.9: no newer grammar, standard-library API or evaluated `X | Y` type may reach
    the module or the library it bundles. (No 3.9 interpreter exists on these machines, so this is static.)"""
    version, python = _declared_minimum()
    for path in SHIPPED_PY:  # the grammar of that Python (no match statements, no parenthesised with-items, ...)
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=python)
    assert _vermin_violations(SHIPPED_PY, python) == [], f"does not run on Slicer {version}'s Python"
    unions = {str(p.relative_to(REPO)): _runtime_union_types(p) for p in SHIPPED_PY}
    assert {k: v for k, v in unions.items() if v} == {}, f"`X | Y` evaluated at run time on Slicer {version}"


def test_python_version_checks_catch_what_breaks_on_3_9(tmp_path):
    hinted = tmp_path / "parameters.py"
    hinted.write_text("from __future__ import annotations\nimport typing\n\n"
                      "class P:\n    volume: int | None = None\n\ntyping.get_type_hints(P)\n")
    assert _runtime_union_types(hinted) == [5]
    alias = tmp_path / "alias.py"
    alias.write_text("from __future__ import annotations\nimport torch\nMaybe = torch.Tensor | None\n"
                     "def f(x: torch.Tensor | None) -> int | None:\n    return 1 | 2\n")
    assert _runtime_union_types(alias) == [3]
    newer = tmp_path / "newer.py"
    newer.write_text("def f(x):\n    return list(zip(x, x, strict=True))\n")
    assert _vermin_violations([newer], (3, 9))


def test_contributors_are_named_with_their_organisation():
    text = (REPO / "CMakeLists.txt").read_text()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', text).group(1)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors.split(","))
    module = MODULE_FILE.read_text()
    assert re.search(r'contributors = \["[^"(]+ \([^)]+\)"', module)
    assert "documentation</a>" in module
