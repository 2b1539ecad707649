"""The extension's sample data: the shipped files load into a real MRML scene with the right geometry and segments,
the scene links every source segmentation to its volume so the module pairs them, the files are what
Resources/make_sample_data.py makes, and the registration passes what Slicer's Sample Data module accepts."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from slicer_helpers import REPO, ijk_to_ras, require_slicer_core, scene  # noqa: F401

from AlignFlowSlicerLib import sample_data

FILES = sample_data.sample_files()
DATA_FILES = [f for f in FILES if f.role != "scene"]
SLICER_GIT = Path(os.environ.get("ALIGNFLOW_SLICER_GIT", "/work/.mirror/Slicer+Slicer/repo"))


def _make_sample_data():
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "Resources" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_segmentation(scene, path: Path):
    """A .seg.nrrd as Slicer's Segmentations reader loads it: through MRML's segmentation storage node."""
    import slicer

    from AlignFlowLib.mrml import ensure_segmentation_converters

    ensure_segmentation_converters()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), path
    return node


def _import_scene(scene, path: Path) -> dict[str, object]:
    """What the Sample Data button does last: import the .mrml into the current scene."""
    from AlignFlowLib.mrml import ensure_segmentation_converters

    ensure_segmentation_converters()
    scene.SetURL(str(path))
    assert scene.Import(), path
    return {scene.GetNthNode(i).GetName(): scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())}


# Files.

def test_every_sample_file_is_shipped_and_small():
    names = [f.file_name for f in FILES] + [sample_data.THUMBNAIL_FILE]
    assert len(set(names)) == len(names) and all(n.startswith("AlignFlowPhantom") for n in names)  # shared cache
    sizes = {n: (sample_data.SAMPLE_DIR / n).stat().st_size for n in names}
    assert all(0 < size < 100_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 1_000_000
    on_disk = sorted(p.name for p in sample_data.SAMPLE_DIR.iterdir())
    assert on_disk == sorted(names), "a file in SampleData/ that nothing registers (or the reverse)"
    roles = [f.role for f in FILES]
    assert roles.count("source") == roles.count("source_segmentation") == sample_data.NUM_SOURCE_PAIRS >= 2
    assert roles.count("reference") == sample_data.NUM_REFERENCES and roles.count("test") == 1
    assert roles[-1] == "scene"  # fetched last: its files must already be in the cache folder beside it


def test_thumbnail_is_a_png_for_the_sample_data_button():
    from PIL import Image

    with Image.open(sample_data.SAMPLE_DIR / sample_data.THUMBNAIL_FILE) as thumbnail:
        assert thumbnail.format == "PNG"
        width, height = thumbnail.size
    assert 128 <= width <= 400 and 1.2 <= width / height <= 1.8  # the module's buttons are about 6:4


def test_each_file_loads_through_the_bridge_with_photograph_geometry(scene):
    require_slicer_core()
    from AlignFlowLib import mrml

    volumes = {}
    for sample in DATA_FILES:
        path = sample_data.SAMPLE_DIR / sample.file_name
        if sample.file_type == "VolumeFile":
            volume = mrml.read_volume(scene, path, sample.node_name)
            assert volume.IsA("vtkMRMLVectorVolumeNode"), sample.file_name
            voxels = mrml.array_from_volume(volume)
            assert voxels.shape == (1, 128, 128, 3) and voxels.dtype == np.uint8
            assert voxels.std() > 5, f"{sample.file_name} is flat"
            # What the bridge gives a photograph: spacing 1, LPS identity (upright in the axial view).
            np.testing.assert_allclose(ijk_to_ras(volume), np.diag([-1.0, -1.0, 1.0, 1.0]))
            volumes[sample.node_name] = volume
        else:
            segmentation = _read_segmentation(scene, path)
            content = segmentation.GetSegmentation()
            assert content.GetNumberOfSegments() == 1
            assert content.GetNthSegment(0).GetName() == sample_data.SEGMENT_NAME
            volume = volumes[sample.node_name[: -len(" segmentation")]]
            mask = mrml.mask_array(scene, segmentation, volume)
            assert mask.shape == (1, 128, 128) and 0.02 < mask.mean() < 0.4, sample.file_name


def test_scene_file_loads_the_workflow_inputs_linked(scene, tmp_path):
    """One button: the .mrml brings every input, and the module pairs each source volume with its segmentation."""
    require_slicer_core()
    from AlignFlowLib import mrml
    from AlignFlowLib.config import DataConfig
    from AlignFlowLib.data.folders import load_pairs
    from AlignFlowSlicerLib.logic import AlignFlowLogic

    text = (sample_data.SAMPLE_DIR / sample_data.SCENE_FILE).read_text()
    assert 'fileName="/' not in text and ":\\" not in text  # relative paths: the scene loads from Slicer's cache
    nodes = _import_scene(scene, sample_data.SAMPLE_DIR / sample_data.SCENE_FILE)
    assert {f.node_name for f in DATA_FILES} <= set(nodes)
    sources = [nodes[f.node_name] for f in FILES if f.role == "source"]
    for volume in sources:
        segmentation = nodes[f"{volume.GetName()} segmentation"]
        linked = segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole())
        assert linked == volume.GetID()
        assert mrml.mask_array(scene, segmentation, volume).any()
    visible = [nodes[f.node_name].GetDisplayNode().GetVisibility() for f in FILES if f.role == "source_segmentation"]
    assert visible == [1] + [0] * (len(visible) - 1)  # overlays do not stack in one slice view

    logic = AlignFlowLogic(scene)
    pairs = logic.source_pairs_for(sources)
    assert [s.GetName() for _, s in pairs] == [f"{v.GetName()} segmentation" for v in sources]
    folder = logic.export_source(sources, tmp_path / "source")
    loaded = load_pairs(folder, DataConfig(image_size_px=32))
    assert len(loaded) == len(sources) and loaded.masks.sum() > 0
    references = [nodes[f.node_name] for f in FILES if f.role == "reference"]
    assert len(list(logic.export_references(references, tmp_path / "references").glob("*.nrrd"))) == len(references)


def test_files_are_what_the_script_makes(scene, tmp_path):
    """Regenerated with the script's fixed seeds, every file holds the same voxels, masks and geometry."""
    require_slicer_core()
    from AlignFlowLib import mrml

    _make_sample_data().write_sample_data(tmp_path)
    for sample in DATA_FILES:
        shipped, fresh = sample_data.SAMPLE_DIR / sample.file_name, tmp_path / sample.file_name
        if sample.file_type == "VolumeFile":
            a, b = mrml.read_volume(scene, shipped), mrml.read_volume(scene, fresh)
            np.testing.assert_array_equal(mrml.array_from_volume(a), mrml.array_from_volume(b))
            np.testing.assert_allclose(ijk_to_ras(a), ijk_to_ras(b))
            volume = a
        else:
            masks = [mrml.mask_array(scene, _read_segmentation(scene, p), volume) for p in (shipped, fresh)]
            np.testing.assert_array_equal(*masks)
    # The scenes hold the same nodes, names, links and files (attributes a newer slicer-core adds do not matter).
    assert _scene_outline(sample_data.SAMPLE_DIR / sample_data.SCENE_FILE) == _scene_outline(
        tmp_path / sample_data.SCENE_FILE)


def _scene_outline(path: Path) -> list[tuple]:
    import xml.etree.ElementTree as ET

    keys = ("id", "name", "references", "fileName", "visibility", "window", "level")
    return [(node.tag, *(node.get(k) for k in keys)) for node in ET.parse(path).getroot()]


def test_source_pairs_are_the_library_phantoms():
    """The shipped pairs are make_phantom_pairs' source domain, the references and test volume its target."""
    script = _make_sample_data()
    arrays = script.phantom_arrays()
    from AlignFlowLib.data.phantoms import make_phantom_pairs

    images, masks = make_phantom_pairs("source", sample_data.NUM_SOURCE_PAIRS, script.SIZE_PX, script.SOURCE_SEED)
    np.testing.assert_array_equal(arrays["AlignFlow source 2"][0], images[1])
    np.testing.assert_array_equal(arrays["AlignFlow source 2"][1], masks[1].astype(bool))
    # Target style: cooler (less red) than the source.
    assert arrays["AlignFlow reference 1"][0][..., 0].mean() < images[..., 0].mean()


# Registration.

class RecordingSampleData:
    """Stands in for `import SampleData`: its logic class with the registration functions, recording the calls.
    The parameter names are Slicer's (Modules/Scripted/SampleData/SampleData.py, 5.12 / main)."""

    calls: list = []

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataCategory(category, title):
            RecordingSampleData.calls.append(("category", {"category": category, "title": title}))

        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                           nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                           loadFileTypes=None, loadFiles=None, loadFileProperties={}, checksums=None,
                                           loadFileType=None):
            RecordingSampleData.calls.append(("source", dict(locals())))


def _check_source(kwargs: dict) -> None:
    """What SampleDataSource demands of a multi-file source, and what its download and load steps will do."""
    uris = kwargs["uris"]
    types = kwargs.get("loadFileTypes", kwargs.get("loadFileType"))
    lists = [uris, kwargs["fileNames"], kwargs["nodeNames"], kwargs["loadFiles"], types, kwargs["checksums"]]
    assert all(isinstance(x, list) and len(x) == len(uris) for x in lists), "SampleDataSource needs equal lengths"
    assert kwargs["loadFiles"] == [False] * (len(uris) - 1) + [True] and types[-1] == "SceneFile"
    assert Path(kwargs["thumbnailFileName"]).is_file()
    for uri, name, checksum in zip(uris, kwargs["fileNames"], kwargs["checksums"]):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
        assert uri.startswith("file:///") and path == sample_data.SAMPLE_DIR / name
        algo, digest = checksum.split(":")
        assert algo == "SHA256" and len(digest) == 64 and digest == sample_data.sha256(path)


def test_registration_passes_slicers_parameters():
    RecordingSampleData.calls = []
    registered = sample_data.register_sample_data(RecordingSampleData)
    assert RecordingSampleData.calls[0] == ("category", {"category": "AlignFlow", "title": "AlignFlow"})
    (_, recorded), = [c for c in RecordingSampleData.calls if c[0] == "source"]
    assert recorded["category"] == "AlignFlow" and recorded["sampleName"] == "AlignFlowPhantoms"
    assert recorded["loadFileType"] is None and recorded["loadFileTypes"][-1] == "SceneFile"
    assert registered == [{k: v for k, v in recorded.items() if k in registered[0]}]
    _check_source(recorded)


def test_registration_uses_slicer_5_6_names_there():
    """Slicer 5.6: `loadFileType` (a list is fine), no category titles; also accepts the bare function."""
    calls = []

    def register_5_6(category="Custom", sampleName=None, uris=None, fileNames=None, nodeNames=None,
                     customDownloader=None, thumbnailFileName=None, loadFileType="VolumeFile", loadFiles=None,
                     loadFileProperties={}, checksums=None):
        calls.append(dict(locals()))

    sample_data.register_sample_data(register_5_6)
    assert calls[0]["loadFileType"][-1] == "SceneFile"
    _check_source(calls[0])


def test_download_step_reads_the_file_uris(tmp_path):
    """Slicer's download step is urllib.request.urlretrieve(uri, cache/fileName), then a checksum comparison."""
    kwargs = sample_data.sample_data_source()
    for uri, name, checksum in zip(kwargs["uris"], kwargs["fileNames"], kwargs["checksums"]):
        urllib.request.urlretrieve(uri, tmp_path / name)
        assert checksum == f"SHA256:{sample_data.sha256(tmp_path / name)}"


def _slicer_source(revision: str) -> str:
    if not (SLICER_GIT / "HEAD").is_file():
        pytest.skip(f"no Slicer source mirror at {SLICER_GIT} (set ALIGNFLOW_SLICER_GIT)")
    source = f"{revision}:Modules/Scripted/SampleData/SampleData.py"
    out = subprocess.run(["git", "-C", str(SLICER_GIT), "show", source], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"{revision} not in the Slicer mirror: {out.stderr.strip()}")
    return out.stdout


@pytest.mark.parametrize("revision", ["HEAD", "v5.8.0", "v5.6.2"])
def test_registration_binds_to_the_real_slicer_signature(revision):
    """Against Slicer's own source: a stand-in with exactly the parameters its registerCustomSampleDataSource
    declares (taken from the file with ast, at run time) accepts what we pass."""
    tree = ast.parse(_slicer_source(revision))
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataLogic")
    function = next(n for n in logic.body if isinstance(n, ast.FunctionDef)
                    and n.name == "registerCustomSampleDataSource")
    namespace: dict = {}
    exec(f"def stand_in({ast.unparse(function.args)}):\n    calls.append(locals())\n", {"calls": []}, namespace)
    stand_in = namespace["stand_in"]
    calls = stand_in.__globals__["calls"]
    registered = sample_data.register_sample_data(stand_in)
    inspect.signature(stand_in).bind(**registered[0])
    assert len(calls) == 1
    _check_source(calls[0])
