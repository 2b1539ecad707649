"""AlignFlow: few-shot distribution-aligned flow matching for synthesising target-styled image–mask pairs.

The names users need, imported lazily: `import AlignFlowLib.runner` (the Slicer side) must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__  # noqa: F401  (re-exported)

_EXPORTS = {
    "AlignConfig": "config", "DataConfig": "config", "ImageGeneratorConfig": "config",
    "MaskGeneratorConfig": "config", "RunConfig": "config", "SamplerConfig": "config", "SegmenterConfig": "config",
    "SynthesisConfig": "config", "PairSet": "data.folders", "ImageSet": "data.folders", "load_pairs": "data.folders",
    "load_references": "data.folders", "write_phantom_dataset": "data.phantoms", "AlignFlowError": "errors",
    "InputDataError": "errors", "RunFolderError": "errors", "sample_ode": "flow.sampler", "preset": "presets",
    "RunFolder": "run_folder", "ExportedSegmenter": "segmenter.export", "run_demo": "demo",
}
_MODULES = ("pipeline",)

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'AlignFlowLib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
