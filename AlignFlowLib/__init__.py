"""AlignFlow: few-shot distribution-aligned flow matching for synthesising target-styled image–mask pairs.

The names users need; everything heavier lives in the subpackages (`flow`, `models`, `reward`, `train`, ...).
"""

from . import pipeline
from .config import (AlignConfig, DataConfig, ImageGeneratorConfig, MaskGeneratorConfig, RunConfig, SamplerConfig,
                     SegmenterConfig, SynthesisConfig)
from .data.folders import ImageSet, PairSet, load_pairs, load_references
from .data.phantoms import write_phantom_dataset
from .errors import AlignFlowError, InputDataError, RunFolderError
from .flow.sampler import sample_ode
from .presets import preset
from .run_folder import RunFolder
from .segmenter.export import ExportedSegmenter
from .version import __version__

__all__ = [
    "AlignConfig", "DataConfig", "ImageGeneratorConfig", "MaskGeneratorConfig", "RunConfig", "SamplerConfig",
    "SegmenterConfig", "SynthesisConfig", "PairSet", "ImageSet", "load_pairs", "load_references",
    "write_phantom_dataset", "AlignFlowError", "InputDataError", "RunFolderError", "sample_ode", "preset",
    "RunFolder", "ExportedSegmenter", "pipeline", "__version__",
]
