"""Shared pieces for the Slicer-side tests: a real MRML scene from the slicer-core wheel, files with awkward
geometry, and a stand-in segmenter. (Not named conftest.py: Testing/conftest.py already owns that module name.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AlignFlowSlicer"
for path in (REPO, MODULE_DIR):  # AlignFlowLib, and the module's Qt-free AlignFlowSlicerLib
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def require_slicer_core():
    """Import slicer-core's `slicer` package or skip, saying why (a different PyPI 'slicer' may shadow it)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not slicer-core (no vtkMRMLScene)")
    return slicer


@pytest.fixture
def scene():
    slicer = require_slicer_core()
    scene = slicer.vtkMRMLScene()
    yield scene
    scene.Clear(1)


def ijk_to_ras(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def write_volume_file(path: Path, array: np.ndarray, spacing=(0.5, 0.7, 2.0), origin=(10.0, -20.0, 30.0),
                      direction=(0, -1, 0, 1, 0, 0, 0, 0, 1)):
    """A file with non-identity spacing, origin and a rotated direction (LPS, as SimpleITK writes)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return image


class ThresholdSegmenter:
    """Stands in for ExportedSegmenter: foreground where the (first channel of the) image is above `level`.
    Records the shape of every slice it sees, so tests can check the slicing axis."""

    def __init__(self, level: float):
        self.level, self.shapes = level, []

    def segment_array(self, image: np.ndarray) -> np.ndarray:
        self.shapes.append(image.shape)
        image = np.asarray(image)
        return (image[..., 0] if image.ndim == 3 else image) > self.level
