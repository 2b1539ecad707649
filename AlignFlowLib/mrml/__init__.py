"""The MRML bridge: the only part of AlignFlowLib that imports slicer/vtk. Qt-free; every function takes the scene.

Works inside 3D Slicer and against the `slicer-core` wheel (a real MRML scene without the application), which is how
it is tested.
"""

from .folders import (LoadedPair, export_pairs, export_references, load_generated_pairs, load_pair_folder, mask_array,
                      read_manifest, show_as_outline)
from .nodes import (add_new_segment, add_segment, array_from_volume, ensure_segmentation_converters, read_volume, segmentation_for,
                    subject_hierarchy_folder, volume_from_array, write_mask_to_segment, write_volume)
from .segmenter import apply_segmenter, load_segmenter, segment_volume

__all__ = [
    "export_pairs", "export_references", "load_generated_pairs", "apply_segmenter",
    "LoadedPair", "load_pair_folder", "mask_array", "read_manifest", "show_as_outline", "add_new_segment", "add_segment", "array_from_volume", "ensure_segmentation_converters", "read_volume",
    "segmentation_for", "subject_hierarchy_folder", "volume_from_array", "write_mask_to_segment", "write_volume",
    "load_segmenter", "segment_volume",
]
