"""The extension's sample data in Slicer's Sample Data module: every input of the AlignFlow workflow on phantom data
(labelled source pairs, a few unlabelled target references, a test volume), one button away.

The files ship with the extension (Resources/SampleData, made by Resources/make_sample_data.py), so the Sample Data
module "downloads" them from local file:// URIs, which its urllib download step reads like any other URL. The
button loads one MRML scene over all of them: only a scene keeps each source segmentation linked to its volume
(reference image geometry), and that link is how the module pairs a source volume with its segmentation.

Qt-free on purpose: `register_sample_data` takes the SampleData module (or its logic class, or the registration
function) as an argument, so tests drive it with a recording stand-in.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any, Callable, NamedTuple

CATEGORY = "AlignFlow"
SAMPLE_NAME = "AlignFlowPhantoms"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
SCENE_FILE = "AlignFlowPhantoms.mrml"
THUMBNAIL_FILE = "AlignFlowPhantoms.png"
NUM_SOURCE_PAIRS = 4
NUM_REFERENCES = 3
SEGMENT_NAME = "lesion"


class SampleFile(NamedTuple):
    """One shipped file. `role`: source, source_segmentation, reference, test or scene."""

    file_name: str
    node_name: str
    file_type: str  # Slicer IO file type: VolumeFile, SegmentationFile or SceneFile
    role: str


def sample_files() -> list[SampleFile]:
    """Every file of the sample, the scene last: the Sample Data module fetches in this order, and the scene can only
    load once the files it names are in Slicer's cache folder beside it. File names carry a prefix because that
    cache folder is shared by all sample data."""
    files: list[SampleFile] = []
    for k in range(1, NUM_SOURCE_PAIRS + 1):
        files.append(SampleFile(f"AlignFlowPhantom_Source{k}.nrrd", f"AlignFlow source {k}", "VolumeFile", "source"))
        files.append(SampleFile(f"AlignFlowPhantom_Source{k}.seg.nrrd", f"AlignFlow source {k} segmentation",
                                "SegmentationFile", "source_segmentation"))
    for k in range(1, NUM_REFERENCES + 1):
        files.append(SampleFile(f"AlignFlowPhantom_Reference{k}.nrrd", f"AlignFlow reference {k}", "VolumeFile",
                                "reference"))
    files.append(SampleFile("AlignFlowPhantom_Test.nrrd", "AlignFlow test", "VolumeFile", "test"))
    files.append(SampleFile(SCENE_FILE, "", "SceneFile", "scene"))
    return files


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sample_data_source(folder: Path = SAMPLE_DIR) -> dict[str, Any]:
    """Keyword arguments for SampleDataLogic.registerCustomSampleDataSource (Slicer >= 5.8 names).

    Data files are fetched but not loaded one by one (loadFiles False); the scene, fetched last, loads them all.
    Checksums are computed from the shipped files: Slicer reuses a cached file only while its checksum matches, so
    an updated extension never shows a stale copy from an earlier version.
    """
    folder = Path(folder).resolve()
    files = sample_files()
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(folder / THUMBNAIL_FILE),
        "uris": [(folder / f.file_name).as_uri() for f in files],
        "fileNames": [f.file_name for f in files],
        "nodeNames": [None] * len(files),  # names come from the scene
        "loadFiles": [f.role == "scene" for f in files],
        "loadFileTypes": [f.file_type for f in files],
        "checksums": [f"SHA256:{sha256(folder / f.file_name)}" for f in files],
    }


def _registration_functions(sample_data: Any) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """(registerCustomSampleDataSource, registerCustomSampleDataCategory or None) from the SampleData module, its
    SampleDataLogic class, or the registration function itself."""
    logic = getattr(sample_data, "SampleDataLogic", sample_data)
    register = getattr(logic, "registerCustomSampleDataSource", logic)
    if not callable(register):
        raise TypeError(f"{sample_data!r} offers no registerCustomSampleDataSource")
    return register, getattr(logic, "registerCustomSampleDataCategory", None)


def _accepted(register: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Slicer 5.6 names the file types `loadFileType` (a list is fine there too); 5.8+ `loadFileTypes`."""
    try:
        parameters = inspect.signature(register).parameters
    except (TypeError, ValueError):  # a builtin without a signature: assume the current names
        return kwargs
    if "loadFileTypes" not in parameters and "loadFileType" in parameters:
        kwargs = dict(kwargs)
        kwargs["loadFileType"] = kwargs.pop("loadFileTypes")
    return kwargs


def register_sample_data(sample_data: Any, folder: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    """Register the AlignFlow sample with Slicer's Sample Data module; returns the keyword arguments of each
    registration. Call it once the application has started (startupCompleted), passing `import SampleData`."""
    register, register_category = _registration_functions(sample_data)
    if register_category is not None:  # Slicer >= 5.12: a category title
        register_category(CATEGORY, "AlignFlow")
    kwargs = _accepted(register, sample_data_source(folder))
    register(**kwargs)
    return [kwargs]
