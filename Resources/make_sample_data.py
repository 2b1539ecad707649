"""Regenerate the extension's sample data, AlignFlowSlicer/Resources/SampleData/: the inputs of the whole AlignFlow
workflow on the library's phantom domains, for Slicer's Sample Data module (registered by
AlignFlowSlicerLib/sample_data.py, which also names the files).

    .venv/bin/python Resources/make_sample_data.py [--out FOLDER]

Writes, with fixed seeds (a rerun gives the same images, masks and geometry):

- AlignFlowPhantom_Source{1..4}.nrrd + .seg.nrrd: source-domain phantom image–mask pairs (128 px RGB photographs as
  single-slice vector volumes; one segment "lesion" per segmentation, linked to its volume);
- AlignFlowPhantom_Reference{1..3}.nrrd: unlabelled target-domain phantoms, the few images "from your scanner";
- AlignFlowPhantom_Test.nrrd: one more target-domain phantom, to try an exported segmenter on;
- AlignFlowPhantoms.mrml: a scene over all of them, which the Sample Data button loads (only a scene keeps each
  segmentation linked to its volume; the module pairs source volumes and segmentations by that link);
- AlignFlowPhantoms.png: the Sample Data thumbnail.

Every node is made by AlignFlowLib's MRML bridge on a real slicer-core scene and written by MRML's own storage nodes,
so the geometry is the one the module gives a photograph. Needs slicer-core; no GPU, no rendering, a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "AlignFlowSlicer"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from AlignFlowLib.data.phantoms import make_phantom_pairs  # noqa: E402
from AlignFlowSlicerLib.sample_data import (SAMPLE_DIR, SCENE_FILE, SEGMENT_NAME, THUMBNAIL_FILE,  # noqa: E402
                                            sample_files)

SIZE_PX = 128
SOURCE_SEED, REFERENCE_SEED, TEST_SEED = 2026, 2027, 2028  # three seeds: no phantom scene is shared between sets
SEGMENT_COLOR = (1.0, 0.85, 0.1)  # yellow: stands out on both domains' reddish and greenish tissue
# Written into the .mrml header. A slicer-core scene says "slicer-core 4.0.0", which Slicer reports as "saved with
# another application"; the scene holds only volume and segmentation nodes that Slicer 5.6 (the oldest this
# extension supports) reads, so it is labelled as such.
SCENE_VERSION = "Slicer 5.6.0 0"


def phantom_arrays() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Node name → (RGB image (S, S, 3) uint8, mask (S, S) bool or None), for every file but the scene."""
    files = [f for f in sample_files() if f.role in ("source", "reference", "test")]
    sources = [f for f in files if f.role == "source"]
    references = [f for f in files if f.role == "reference"]
    images, masks = make_phantom_pairs("source", len(sources), SIZE_PX, SOURCE_SEED)
    arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        f.node_name: (images[k], masks[k].astype(bool)) for k, f in enumerate(sources)}
    reference_images, _ = make_phantom_pairs("target", len(references), SIZE_PX, REFERENCE_SEED)
    arrays.update({f.node_name: (reference_images[k], None) for k, f in enumerate(references)})
    test_image, _ = make_phantom_pairs("target", 1, SIZE_PX, TEST_SEED)
    arrays["AlignFlow test"] = (test_image[0], None)
    return arrays


def build_scene(scene) -> dict[str, object]:
    """Add every sample node to `scene` through the bridge; returns node name → node."""
    from AlignFlowLib.mrml import ensure_segmentation_converters, segmentation_for, volume_from_array, \
        write_mask_to_segment

    arrays = phantom_arrays()
    nodes: dict[str, object] = {}
    first_segmentation = True
    for sample in sample_files():
        if sample.role in ("source", "reference", "test"):
            image, _ = arrays[sample.node_name]
            volume = volume_from_array(scene, image, sample.node_name, rgb=True)
            display = volume.GetDisplayNode()
            display.AutoWindowLevelOff()
            display.SetWindowLevel(255, 127.5)  # the photograph's own colours, not an auto-stretched contrast
            nodes[sample.node_name] = volume
        elif sample.role == "source_segmentation":
            volume_name = sample.node_name[: -len(" segmentation")]
            volume, (_, mask) = nodes[volume_name], arrays[volume_name]
            segmentation = segmentation_for(scene, volume, sample.node_name)
            ensure_segmentation_converters()
            # A fixed id and colour (the bridge's add_segment draws both at random): reruns write identical files.
            segment_id = segmentation.GetSegmentation().AddEmptySegment(SEGMENT_NAME, SEGMENT_NAME,
                                                                       list(SEGMENT_COLOR))
            write_mask_to_segment(segmentation, segment_id, mask, volume)
            # All pairs share one place in space (photographs sit at the origin): show only the first pair's
            # segmentation, so a slice view does not stack every lesion on the image it shows.
            segmentation.GetDisplayNode().SetVisibility(first_segmentation)
            first_segmentation = False
            nodes[sample.node_name] = segmentation
    return nodes


def write_sample_data(out: Path = SAMPLE_DIR) -> list[Path]:
    """Write every sample file into `out`; returns their paths (scene and thumbnail included)."""
    import slicer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = slicer.vtkMRMLScene()
    nodes = build_scene(scene)
    written = []
    for sample in sample_files():
        if sample.role == "scene":
            continue
        node = nodes[sample.node_name]
        storage = node.CreateDefaultStorageNode()
        scene.AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
        storage.SetFileName(str(out / sample.file_name))
        storage.SetUseCompression(True)
        if not storage.WriteData(node):
            raise OSError(f"cannot write {out / sample.file_name}")
        written.append(out / sample.file_name)
    scene.SetRootDirectory(str(out))  # storage file names are written relative to it
    scene.SetURL(str(out / SCENE_FILE))
    scene.SetVersion(SCENE_VERSION)
    if not scene.Commit():
        raise OSError(f"cannot write {out / SCENE_FILE}")
    written.append(out / SCENE_FILE)
    written.append(write_thumbnail(scene, nodes, out / THUMBNAIL_FILE))
    return written


def write_thumbnail(scene, nodes: dict[str, object], path: Path, tile_px: int = 96) -> Path:
    """3 × 2 mosaic (the Sample Data module's 6:4 button), read back from the nodes: three source pairs (lesion
    outlined) above two references and the test volume. A 256-colour palette keeps it small."""
    from PIL import Image
    from scipy import ndimage

    from AlignFlowLib.mrml import array_from_volume, mask_array

    tiles = []
    for volume_name in ("AlignFlow source 1", "AlignFlow source 2", "AlignFlow source 3", "AlignFlow reference 1",
                        "AlignFlow reference 2", "AlignFlow test"):
        volume = nodes[volume_name]
        image = Image.fromarray(array_from_volume(volume)[0]).resize((tile_px, tile_px), Image.LANCZOS)
        tile = np.asarray(image).copy()
        segmentation = nodes.get(f"{volume_name} segmentation")
        if segmentation is not None:
            mask = Image.fromarray(mask_array(scene, segmentation, volume)[0].astype(np.uint8) * 255)
            mask = np.asarray(mask.resize((tile_px, tile_px), Image.NEAREST)) > 127
            tile[mask & ~ndimage.binary_erosion(mask, iterations=2)] = np.array(SEGMENT_COLOR) * 255
        tiles.append(tile)
    mosaic = np.concatenate([np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:], axis=1)], axis=0)
    Image.fromarray(mosaic.astype(np.uint8)).quantize(256, method=Image.MEDIANCUT).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help=f"output folder (default {SAMPLE_DIR})")
    args = parser.parse_args(argv)
    for path in write_sample_data(args.out):
        print(f"{path.stat().st_size:>8} B  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
