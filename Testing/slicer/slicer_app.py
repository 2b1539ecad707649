"""A stand-in for the parts of the Slicer application a scripted module touches, so pytest can build the AlignFlow
module's logic and widget exactly as Slicer does, on a real slicer-core MRML scene.

slicer-core ships MRML but not Slicer's Python layer (ScriptedLoadableModule.py, the parameterNodeWrapper package)
nor PythonQt. What is rebuilt here follows Slicer's source (Base/Python/slicer/ScriptedLoadableModule.py and
parameterNodeWrapper/{wrapper,serializers,validators,guiConnectors,util}.py, checked against Slicer main, 2026) in the
behaviours a module can get wrong:

- `ScriptedLoadableModuleLogic.__init__(parent=None)` calls `super().__init__()` with no arguments (cooperative), so
  every class after it in the MRO is constructed with none; the module name is the class name less "Logic"; the
  parameter node is the scene's singleton vtkMRMLScriptedModuleNode tagged with that name.
- `ScriptedLoadableModuleWidget.__init__(parent=None)` also calls `super().__init__()`; Slicer then calls `setup()` and,
  when the module is shown, `enter()`.
- `@parameterNodeWrapper` reads the class's annotations with `typing.get_type_hints(include_extras=True)` at class
  creation (so annotations must evaluate on the oldest supported Python), writes every default through its validators
  into the node, and `connectGui(ui)` walks `ui.__dict__` for widgets with a `SlicerParameterName` property; for a
  qMRMLNodeComboBox it sets `nodeTypes` from the annotation by *instantiating* the annotated class
  (`getNodeTypes`), and a widget/type pair no connector handles is an error.
- A .ui file becomes widgets with its properties; `childWidgetVariables` names them.

The Qt widgets are plain Python objects with the properties and signals the module uses; `emit` stands for a user's
click. Anything the module calls that is not here fails loudly (AttributeError), never silently.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import json
import sys
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import slicer

MODULE_FILE = Path(__file__).resolve().parents[2] / "AlignFlowSlicer" / "AlignFlowSlicer.py"


# Qt (PythonQt style: properties are attributes, signals are connected by their C++ signature).

class QObject:
    def __init__(self, name: str = "", properties: dict | None = None):
        self.objectName = name
        self._properties = dict(properties or {})
        self._slots: dict[str, list[Callable]] = {}
        for key, value in self._properties.items():
            if key != "SlicerParameterName" and not key.startswith("_"):
                setattr(self, key, value)

    def property(self, name: str):
        return self._properties.get(name)

    def setProperty(self, name: str, value) -> None:
        self._properties[name] = value

    def connect(self, signal: str, slot: Callable) -> None:
        self._slots.setdefault(signal, []).append(slot)

    def disconnect(self, signal: str, slot: Callable) -> None:
        self._slots.get(signal, []).remove(slot)

    def emit(self, signal: str, *args) -> None:
        for slot in list(self._slots.get(signal, [])):
            slot(*args)

    def isWidgetType(self) -> bool:
        return False


class QWidget(QObject):
    def __init__(self, name: str = "", properties: dict | None = None):
        self.enabled, self.toolTip, self.styleSheet = True, "", ""
        super().__init__(name, properties)
        self.children: list[QWidget] = []
        self._layout = None

    def setLayout(self, layout) -> None:
        self._layout = layout

    def layout(self):
        return self._layout

    def show(self) -> None:
        pass


class QVBoxLayout:
    def __init__(self):
        self.widgets: list = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)


class QLabel(QWidget):
    def __init__(self, name="", properties=None):
        self.text, self.wordWrap = "", False
        super().__init__(name, properties)


class QPushButton(QWidget):
    def __init__(self, name="", properties=None):
        self.text = ""
        super().__init__(name, properties)

    def click(self) -> None:
        if self.enabled:
            self.emit("clicked(bool)", False)


class QCheckBox(QWidget):
    def __init__(self, name="", properties=None):
        self.checked, self.text = False, ""
        super().__init__(name, properties)


class QLineEdit(QWidget):
    def __init__(self, name="", properties=None):
        self.text, self.placeholderText = "", ""
        super().__init__(name, properties)


class QSpinBox(QWidget):
    def __init__(self, name="", properties=None):
        self.value, self.minimum, self.maximum = 0, 0, 99
        super().__init__(name, properties)


class QComboBox(QWidget):
    def __init__(self, name="", properties=None):
        self.items: list[str] = []
        self.currentIndex = -1
        super().__init__(name, properties)

    def addItem(self, text: str) -> None:
        self.items.append(text)
        if self.currentIndex < 0:
            self.currentIndex = 0

    @property
    def currentText(self) -> str:
        return self.items[self.currentIndex] if 0 <= self.currentIndex < len(self.items) else ""

    def findText(self, text: str) -> int:
        return self.items.index(text) if text in self.items else -1


class QProgressBar(QWidget):
    def __init__(self, name="", properties=None):
        self.value, self.maximum = 0, 100
        super().__init__(name, properties)


class QPlainTextEdit(QWidget):
    def __init__(self, name="", properties=None):
        self.lines: list[str] = []
        self.readOnly, self.maximumBlockCount = False, 0
        super().__init__(name, properties)

    def appendPlainText(self, text: str) -> None:
        self.lines.append(text)


class QTimer(QObject):
    def __init__(self):
        super().__init__()
        self.interval, self.active = 0, False

    def setInterval(self, ms: int) -> None:
        self.interval = ms

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def fire(self) -> None:
        """Stands for the event loop: one timeout."""
        self.emit("timeout()")


class QSettings:
    store: dict = {}

    def value(self, key: str, default=None):
        return self.store.get(key, default)

    def setValue(self, key: str, value) -> None:
        self.store[key] = value


class QIcon:
    def __init__(self, path: str = ""):
        self.path = path


class Qt:
    Checked, Unchecked = 2, 0


# MRML-aware widgets.

class qMRMLWidget(QWidget):
    def __init__(self, name="", properties=None):
        self.mrmlScene = None
        super().__init__(name, properties)

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene
        for child in self.children:
            if hasattr(child, "setMRMLScene"):
                child.setMRMLScene(scene)


class qMRMLNodeComboBox(QWidget):
    def __init__(self, name="", properties=None):
        self._nodeTypes: tuple = ()
        self.hideChildNodeTypes: list = []
        self.noneEnabled = self.addEnabled = self.removeEnabled = self.renameEnabled = False
        self.mrmlScene, self._current = None, None
        super().__init__(name, properties)

    @property
    def nodeTypes(self) -> tuple:
        return self._nodeTypes

    @nodeTypes.setter
    def nodeTypes(self, names) -> None:
        for name in names:  # as Qt would fail to list them: an unknown class is a bug in the module
            if not hasattr(slicer, name):
                raise ValueError(f"unknown MRML node class {name!r}")
        self._nodeTypes = tuple(names)

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene

    def currentNode(self):
        return self._current

    def setCurrentNode(self, node) -> None:
        if node is not None:
            if not any(node.IsA(t) for t in self._nodeTypes):
                raise ValueError(f"{node.GetClassName()} is not one of {self._nodeTypes}")
            if any(node.IsA(t) for t in self.hideChildNodeTypes):
                raise ValueError(f"{node.GetClassName()} is hidden in this combo box")
        changed = node is not self._current
        self._current = node
        if changed:
            self.emit("currentNodeChanged(vtkMRMLNode*)", node)


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    def __init__(self, name="", properties=None):
        self._checked: list = []
        super().__init__(name, properties)

    def setCheckState(self, node, state) -> None:
        if state == Qt.Checked and node not in self._checked:
            self._checked.append(node)
        elif state != Qt.Checked and node in self._checked:
            self._checked.remove(node)
        self.emit("checkedNodesChanged()")

    def checkedNodes(self) -> list:
        return list(self._checked)


class ctkCollapsibleButton(QWidget):
    def __init__(self, name="", properties=None):
        self.text, self.collapsed = "", False
        super().__init__(name, properties)


class ctkPathLineEdit(QWidget):
    Dirs, Files = 1, 2

    def __init__(self, name="", properties=None):
        self.currentPath, self.filters = "", 0
        super().__init__(name, properties)


WIDGET_CLASSES = {cls.__name__: cls for cls in (
    QWidget, QLabel, QPushButton, QCheckBox, QLineEdit, QSpinBox, QComboBox, QProgressBar, QPlainTextEdit,
    qMRMLWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox, ctkCollapsibleButton, ctkPathLineEdit)}


def _ui_value(prop: ET.Element):
    child = prop[0]
    if child.tag == "string":
        return child.text or ""
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "number":
        return int(child.text)
    if child.tag == "stringlist":
        return [s.text for s in child]
    if child.tag == "enum":
        return child.text
    return None


def load_ui(path: str) -> QWidget:
    """A .ui file → widgets with the file's properties (as QUiLoader would build them). An unknown widget class in
    the .ui is an error, so the stand-in cannot drift from the file silently."""
    def build(element: ET.Element) -> QWidget:
        cls_name = element.get("class")
        if cls_name not in WIDGET_CLASSES:
            raise TypeError(f"{path}: widget class {cls_name} has no stand-in")
        properties = {p.get("name"): _ui_value(p) for p in element.findall("property")}
        widget = WIDGET_CLASSES[cls_name](element.get("name"), properties)
        for descendant in element.iter("widget"):
            if descendant is not element and _parent_widget(element, descendant) is element:
                widget.children.append(build(descendant))
        return widget

    root = ET.parse(path).getroot().find("widget")
    return build(root)


def _parent_widget(root: ET.Element, target: ET.Element):
    parents = {child: parent for parent in root.iter() for child in parent}
    node = parents.get(target)
    while node is not None and node.tag != "widget":
        node = parents.get(node)
    return node


def child_widget_variables(widget: QWidget) -> types.SimpleNamespace:
    found: dict[str, QWidget] = {}

    def walk(w: QWidget) -> None:
        for child in w.children:
            if child.objectName:
                found[child.objectName] = child
            walk(child)

    walk(widget)
    return types.SimpleNamespace(**found)


# parameterNodeWrapper (validators, serializers, GUI connectors).

class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"value {value!r} not in choices {self.choices}")


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"value {value!r} not within [{self.minimum}, {self.maximum}]")


class IsInstance:
    def __init__(self, classtype):
        self.classtype = classtype

    def validate(self, value) -> None:
        if value is not None and not isinstance(value, self.classtype):
            raise ValueError(f"{type(value).__name__} is not a {self.classtype.__name__}")


def _split_annotated(datatype):
    if typing.get_origin(datatype) is typing.Annotated:
        args = typing.get_args(datatype)
        return args[0], list(args[1:])
    return datatype, []


def _is_node_type(datatype) -> bool:
    return isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode)


def get_node_types(datatype) -> tuple:
    """As Slicer's parameterNodeWrapper.util.getNodeTypes: the class name comes from an instance of the class."""
    base, _ = _split_annotated(datatype)
    if _is_node_type(base):
        return (base().GetClassName(),)
    if typing.get_origin(base) is typing.Union:
        return tuple(arg().GetClassName() for arg in typing.get_args(base) if _is_node_type(arg))
    raise TypeError(f"Cannot handle type {datatype}")


class _Parameter:
    """One field: how it is stored in the vtkMRMLScriptedModuleNode and validated on every write."""

    def __init__(self, name: str, datatype, default):
        self.name, self.datatype = name, datatype
        base, annotations = _split_annotated(datatype)
        self.base = base
        self.validators = [a for a in annotations if hasattr(a, "validate")]
        origin = typing.get_origin(base)
        if origin is list:
            (element,) = typing.get_args(base)
            if not _is_node_type(element):
                raise Exception(f"Unable to create serializer for member {name}: list of {element}")
            self.kind, self.element = "node_list", element
        elif _is_node_type(base):
            self.kind = "node"
            self.validators.append(IsInstance(base))
        elif base in (bool, int, float, str) or base is Path or (isinstance(base, type) and issubclass(base, Path)):
            self.kind = "plain"
        elif isinstance(base, type) and issubclass(base, enum.Enum):
            self.kind = "plain"
        else:
            raise Exception(f"Unable to create serializer for member {name}: {datatype}")
        if default is _NO_DEFAULT:
            default = {"node_list": [], "node": None}.get(self.kind) if self.kind != "plain" else \
                {bool: False, int: 0, float: 0.0, str: ""}.get(base, Path() if base is Path else None)
        self.default = default

    def is_in(self, node) -> bool:
        return node.GetParameter(self.name) != "" or self.name in _parameter_names(node)

    def write(self, node, value) -> None:
        for validator in self.validators:
            validator.validate(value)
        if self.kind == "node":
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif self.kind == "node_list":
            for element in value:
                if not isinstance(element, self.element):
                    raise ValueError(f"{type(element).__name__} is not a {self.element.__name__}")
            node.SetParameter(self.name, json.dumps([element.GetID() for element in value]))
        else:
            node.SetParameter(self.name, json.dumps(str(value) if isinstance(value, Path) else value))

    def read(self, node):
        if self.kind == "node":
            return node.GetNodeReference(self.name)
        if self.kind == "node_list":
            scene = node.GetScene()
            return [scene.GetNodeByID(i) for i in json.loads(node.GetParameter(self.name) or "[]")]
        value = json.loads(node.GetParameter(self.name))
        return Path(value) if self.base is Path else self.base(value)


_NO_DEFAULT = object()


def _parameter_names(node) -> list[str]:
    return list(node.GetParameterNames())


def _connector_for(widget, parameter: _Parameter):
    """(read, write, signal) for a widget bound to a parameter, or an error as Slicer's createGuiConnector raises."""
    base = parameter.base
    if type(widget) is qMRMLNodeComboBox and parameter.kind == "node":
        widget.nodeTypes = get_node_types(parameter.datatype)
        return widget.currentNode, widget.setCurrentNode, "currentNodeChanged(vtkMRMLNode*)"
    if type(widget) is QCheckBox and base is bool:
        return (lambda: widget.checked), (lambda v: setattr(widget, "checked", v)), "toggled(bool)"
    if type(widget) is QSpinBox and base is int:
        for validator in parameter.validators:
            if isinstance(validator, WithinRange):
                widget.minimum, widget.maximum = validator.minimum, validator.maximum
        return (lambda: widget.value), (lambda v: setattr(widget, "value", v)), "valueChanged(int)"
    if type(widget) is QComboBox and base is str:
        choices = [v for v in parameter.validators if isinstance(v, Choice)]
        if not choices:
            raise RuntimeError(f"Unable to create GUI connector: QComboBox for {parameter.name} needs a Choice")
        widget.items, widget.currentIndex = [], -1  # Slicer's connector clears the box first
        for choice in choices[0].choices:
            widget.addItem(str(choice))

        def write(value) -> None:
            widget.currentIndex = widget.findText(value)
        return (lambda: widget.currentText), write, "currentIndexChanged(int)"
    if type(widget) is QLineEdit and base is str:
        return (lambda: widget.text), (lambda v: setattr(widget, "text", v)), "textChanged(QString)"
    if type(widget) is ctkPathLineEdit and base is Path:
        return (lambda: Path(widget.currentPath)), (lambda v: setattr(widget, "currentPath", str(v))), \
            "currentPathChanged(QString)"
    raise RuntimeError(f"Unable to create GUI connector from widget of type {type(widget).__name__} "
                       f"to parameter {parameter.name} of type {parameter.datatype}")


def parameterNodeWrapper(classtype=None):
    def wrap(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        parameters = {name: _Parameter(name, hint, getattr(cls, name, _NO_DEFAULT)) for name, hint in hints.items()}

        def __init__(self, parameterNode):
            self.parameterNode = parameterNode
            self._guis: dict[int, list] = {}
            self._next_tag = 0
            for parameter in parameters.values():
                if not parameter.is_in(parameterNode):
                    parameter.write(parameterNode, parameter.default)

        def connectGui(self, gui) -> int:
            bound = []
            for widget in gui.__dict__.values():  # the module passes childWidgetVariables' namespace
                name = widget.property("SlicerParameterName")
                if not name:
                    continue
                if name not in parameters:
                    raise ValueError(f"Cannot find param name '{name}' in parameterNodeWrapper")
                parameter = parameters[name]
                read, write, signal = _connector_for(widget, parameter)
                write(parameter.read(self.parameterNode))
                slot = (lambda *_args, p=parameter, r=read: p.write(self.parameterNode, r()))
                widget.connect(signal, slot)
                bound.append((widget, signal, slot))
            tag, self._next_tag = self._next_tag, self._next_tag + 1
            self._guis[tag] = bound
            return tag

        def disconnectGui(self, tag) -> None:
            for widget, signal, slot in self._guis.pop(tag, []):
                widget.disconnect(signal, slot)

        for name, parameter in parameters.items():
            setattr(cls, name, property(lambda self, p=parameter: p.read(self.parameterNode),
                                        lambda self, value, p=parameter: p.write(self.parameterNode, value)))
        cls.__init__ = __init__
        cls.allParameters = parameters
        cls.connectGui = connectGui
        cls.disconnectGui = disconnectGui
        return cls

    return wrap if classtype is None else wrap(classtype)


# ScriptedLoadableModule.

class ScriptedLoadableModule:
    def __init__(self, parent):
        super().__init__()
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title, parent.categories, parent.dependencies = "", [], []
        parent.contributors, parent.helpText, parent.acknowledgementText = [], "", ""
        icon = Path(parent.path).parent / "Resources" / "Icons" / f"{self.moduleName}.png"
        if icon.is_file():
            parent.icon = QIcon(str(icon))
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename: str) -> str:
        return str(Path(self.parent.path).parent / "Resources" / filename)

    def runTest(self, msec=100, **kwargs):
        raise NotImplementedError("in-Slicer self tests run only in Slicer")


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.developerMode = False
        if not parent:
            self.parent = qMRMLWidget()
            self.parent.setLayout(QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
        slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def resourcePath(self, filename: str) -> str:
        return str(Path(slicer.util.modulePath(self.moduleName)).parent / "Resources" / filename)

    def cleanup(self) -> None:
        pass

    def _onModuleAboutToBeUnloaded(self, moduleName: str) -> None:
        if moduleName == self.moduleName:
            self.cleanup()

    def setup(self) -> None:
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest:
    def __init__(self, *args, **kwargs):
        super().__init__()

    def delayDisplay(self, message, msec=None) -> None:
        pass


# The application and slicer.util.

class _ModuleManager(QObject):
    pass


class SlicerApp(QObject):
    def __init__(self, major: int, minor: int):
        super().__init__()
        self.majorVersion, self.minorVersion = major, minor
        self._moduleManager = _ModuleManager()

    def moduleManager(self) -> _ModuleManager:
        return self._moduleManager


class ModuleParent(QWidget):
    """What Slicer passes to a scripted module (qSlicerScriptedLoadableModule) and its widget."""

    def __init__(self, path: str):
        super().__init__("module")
        self.path = path
        self.isEntered = False
        self.setLayout(QVBoxLayout())


class Recorder:
    """slicer.util's dialogs and helpers, recorded instead of shown."""

    def __init__(self):
        self.errors: list[str] = []
        self.confirm = True
        self.pip_calls: list[str] = []
        self.slice_layers: list[dict] = []

    def errorDisplay(self, text, windowTitle=None, **kwargs) -> None:
        self.errors.append(str(text))

    def confirmOkCancelDisplay(self, text, windowTitle=None, **kwargs) -> bool:
        return self.confirm

    confirmYesNoDisplay = confirmOkCancelDisplay

    @contextlib.contextmanager
    def tryWithErrorDisplay(self, message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:
            self.errors.append(f"{message} {error}" if message else str(error))

    def setSliceViewerLayers(self, **kwargs) -> None:
        self.slice_layers.append(kwargs)

    def pip_install(self, requirement: str) -> None:
        self.pip_calls.append(requirement)


class SlicerStandIn:
    """Everything installed for one test; `module`, `widget`, `logic` are built as Slicer builds them."""

    def __init__(self, monkeypatch, scene, version: tuple[int, int] = (5, 6)):
        self.scene, self.recorder = scene, Recorder()
        qt = types.ModuleType("qt")
        for cls in (QObject, QWidget, QVBoxLayout, QLabel, QPushButton, QCheckBox, QLineEdit, QSpinBox, QComboBox,
                    QProgressBar, QPlainTextEdit, QTimer, QSettings, QIcon, Qt):
            setattr(qt, cls.__name__, cls)
        ctk = types.ModuleType("ctk")
        ctk.ctkPathLineEdit, ctk.ctkCollapsibleButton = ctkPathLineEdit, ctkCollapsibleButton
        slm = types.ModuleType("slicer.ScriptedLoadableModule")
        for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                    ScriptedLoadableModuleTest):
            setattr(slm, cls.__name__, cls)
        pnw = types.ModuleType("slicer.parameterNodeWrapper")
        pnw.parameterNodeWrapper, pnw.Choice, pnw.WithinRange = parameterNodeWrapper, Choice, WithinRange
        for name, module in (("qt", qt), ("ctk", ctk), ("slicer.ScriptedLoadableModule", slm),
                             ("slicer.parameterNodeWrapper", pnw)):
            monkeypatch.setitem(sys.modules, name, module)
        for name in [m for m in sys.modules if m == "AlignFlowSlicerLib.parameters" or m == "AlignFlowSlicerModule"]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
        monkeypatch.setattr(slicer, "app", SlicerApp(*version), raising=False)
        monkeypatch.setattr(slicer, "selfTests", {}, raising=False)
        monkeypatch.setattr(slicer, "qMRMLNodeComboBox", qMRMLNodeComboBox, raising=False)
        util = slicer.util
        monkeypatch.setattr(util, "loadUI", load_ui)
        monkeypatch.setattr(util, "childWidgetVariables", child_widget_variables)
        monkeypatch.setattr(util, "modulePath", lambda name: str(MODULE_FILE))
        for name in ("errorDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay", "tryWithErrorDisplay",
                     "setSliceViewerLayers", "pip_install"):
            monkeypatch.setattr(util, name, getattr(self.recorder, name))
        spec = importlib.util.spec_from_file_location("AlignFlowSlicerModule", MODULE_FILE)
        self.source = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "AlignFlowSlicerModule", self.source)
        spec.loader.exec_module(self.source)

    def build(self):
        """As Slicer does: the module with its parent, the widget with its own parent, setup(), then enter()."""
        self.moduleParent = ModuleParent(str(MODULE_FILE))
        self.module = self.source.AlignFlowSlicer(self.moduleParent)
        self.widgetParent = ModuleParent(str(MODULE_FILE))
        self.widget = self.source.AlignFlowSlicerWidget(self.widgetParent)
        self.widget.setup()
        self.widgetParent.isEntered = True
        self.widget.enter()
        return self.widget

    def unload(self) -> None:
        """As Slicer on exit or module reload: moduleAboutToBeUnloaded → the widget's cleanup()."""
        if getattr(self, "widget", None) is not None:
            slicer.app.moduleManager().emit("moduleAboutToBeUnloaded(QString)", "AlignFlowSlicer")

    def run_timer_until_idle(self, timeout_s: float = 60) -> None:
        """Stands for Qt's event loop while a job runs: fire the poll timer until the job is over."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.widget._timer.active and time.monotonic() < deadline:
            self.widget._timer.fire()
            time.sleep(0.02)
        assert not self.widget._timer.active, "the job did not finish"

