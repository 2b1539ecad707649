"""The module's typed parameter node: one field per setting, saved with the scene. Fields named in the .ui's
`SlicerParameterName` properties are bound by `connectGui`; the two node lists are synced by the widget because no
connector exists for checkable node combo boxes.

Node fields name concrete classes: Slicer's node-combobox connector instantiates the annotated class to learn its
name, and the abstract vtkMRMLVolumeNode cannot be instantiated. vtkMRMLScalarVolumeNode covers RGB images too
(vtkMRMLVectorVolumeNode derives from it); the .ui hides its labelmap subclass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper


@parameterNodeWrapper
class AlignFlowSlicerParameterNode:
    # Source pairs: volumes from the scene (each with its segmentation) or a pair folder.
    sourceVolumes: list[vtkMRMLScalarVolumeNode]
    sourceFromFolder: bool = False
    sourceFolder: Path
    sourceSegmentName: str = ""               # only this segment as foreground; empty = all segments merged
    # Target references: 1–10 unlabelled volumes from the scene or a folder.
    referenceVolumes: list[vtkMRMLScalarVolumeNode]
    referencesFromFolder: bool = False
    referencesFolder: Path
    # Generator: a run folder, trained here or loaded.
    runFolder: Path
    preset: Annotated[str, Choice(["default", "demo"])] = "default"
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    imageSizePx: Annotated[int, WithinRange(16, 1024)] = 128
    generatorSteps: Annotated[int, WithinRange(0, 1000000)] = 0    # 0 = preset's value
    maskSteps: Annotated[int, WithinRange(0, 1000000)] = 0
    resume: bool = False
    # Alignment.
    alignSteps: Annotated[int, WithinRange(0, 100000)] = 0
    adapter: Annotated[str, Choice(["full", "lora"])] = "full"
    # Synthesis.
    numPairs: Annotated[int, WithinRange(1, 100000)] = 200
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    maskSource: Annotated[str, Choice(["generated", "source"])] = "generated"
    previewCount: Annotated[int, WithinRange(0, 1000)] = 8
    # Segmenter.
    segmenterArch: Annotated[str, Choice(["unet", "segresnet"])] = "unet"
    segmenterSteps: Annotated[int, WithinRange(0, 1000000)] = 0
    testFolder: Path
    exportFolder: Path
    applyVolume: vtkMRMLScalarVolumeNode
    applySegmentation: vtkMRMLSegmentationNode


__all__ = ["AlignFlowSlicerParameterNode"]
