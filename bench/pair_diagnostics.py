"""Why do aligned pairs train worse segmenters than stage 1's, when their images sit closer to the target? Compares
the synthetic pair sets a benchmark run wrote (stage 1's and each reference set's aligned ones) with the real target
test frames and the references, without training anything:

- precision / recall (Kynkäänniemi et al. 2019, k-nearest-neighbour manifolds, k = 3) in EfficientNet-Lite0's pooled
  features: precision = share of generated images inside the test frames' manifold (realism), recall = share of test
  frames inside the generated images' manifold (coverage);
- diversity: mean pairwise feature distance of a set over that of the test frames (1 = as varied as the target);
- nearest-reference distance: mean distance of a set's images to their nearest reference (pull onto the K images);
- mask visibility: |mean of the image inside the mask − mean in a 4-pixel ring around it|, per channel, averaged
  over channels and pairs: the lesion's local contrast that a segmenter learns from (the ring keeps letterbox
  borders out unless a lesion lies within 4 pixels of them), against the same on real pairs; and the frozen source
  judge's Dice on the pairs (mask consistency);
- pixel statistics: mean, standard deviation and share of pixels at the clip limits.

The target test frames are read here to locate a gap, not to choose anything (bench/PROTOCOL.md).

    python bench/pair_diagnostics.py RUN_DIR [--data ../shared/data/polyp] [--preset cpu] [--judge FOLDER] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from AlignFlowLib.bench.polyp import load_polyp  # noqa: E402
from AlignFlowLib.bench.protocol import bench_config  # noqa: E402
from AlignFlowLib.data.folders import load_pairs  # noqa: E402
from AlignFlowLib.evaluation import mask_consistency  # noqa: E402
from AlignFlowLib.reward.features import DEEP_DIM, load_feature_extractor  # noqa: E402
from AlignFlowLib.reward.metrics import image_features  # noqa: E402
from AlignFlowLib.segmenter import ExportedSegmenter  # noqa: E402

NEIGHBOURS = 3


def deep_features(images: torch.Tensor, feature_size_px: int = 96) -> torch.Tensor:
    """EfficientNet-Lite0's pooled 1280-d features (KID-EL0's), on the CPU."""
    return image_features(load_feature_extractor(feature_size_px), images)[:, :DEEP_DIM]


def aligned_pair_folders(run: Path) -> list[tuple[str, Path, bool]]:
    """(reference set, folder, from real masks?) for every aligned pair folder of a benchmark run: pairs from
    generated masks, or from real ones (`synthesis.mask_source=source`, translations)."""
    return [(set_dir.name, folder, folder.name != "pairs_generated_masks")
            for set_dir in sorted((run / "aligned").glob("*")) for folder in sorted(set_dir.glob("pairs_*_masks"))]


def knn_radii(features: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # k + 1: the point itself is at distance 0


def coverage(points: torch.Tensor, manifold: torch.Tensor) -> float:
    """Share of `points` within the k-NN radius of at least one point of `manifold`."""
    inside = torch.cdist(points, manifold) <= knn_radii(manifold)[None, :]
    return float(inside.any(dim=1).float().mean())


def nearest_reference(features: torch.Tensor, references: torch.Tensor) -> float:
    """Mean distance of each point to its nearest reference."""
    return float(torch.cdist(features, references).min(dim=1).values.mean())


def mean_pairwise(features: torch.Tensor) -> float:
    distances = torch.cdist(features, features)
    count = len(features)
    return float(distances.sum() / (count * (count - 1)))


def mask_visibility(images: torch.Tensor, masks: torch.Tensor, ring_px: int = 4) -> float:
    """Mean over pairs of |mean inside the mask − mean of the ring just outside it| (`ring_px` wide), averaged over
    channels: the lesion's local contrast, which letterbox borders and the far background do not enter."""
    inside = masks > 0.5
    grown = F.max_pool2d(inside.float(), 2 * ring_px + 1, stride=1, padding=ring_px) > 0.5
    ring = grown & ~inside
    values = []
    for image, region, around in zip(images.float(), inside[:, 0], ring[:, 0]):
        if region.any() and around.any():
            values.append(float((image[:, region].mean(1) - image[:, around].mean(1)).abs().mean()))
    return sum(values) / max(len(values), 1)


def describe(images: torch.Tensor, masks: torch.Tensor | None, features: torch.Tensor, test: torch.Tensor,
             test_diversity: float, references: torch.Tensor | None, judge) -> dict[str, float]:
    row = {"count": len(images), "precision": coverage(features, test),
           # a manifold of k-NN balls needs more than k points (K = 1 reference sets have none)
           "recall": coverage(test, features) if len(features) > NEIGHBOURS else None,
           "diversity_vs_test": mean_pairwise(features) / test_diversity if len(features) > 1 else None,
           "pixel_mean": float(images.float().mean()), "pixel_std": float(images.float().std()),
           "clipped_share": float((images.abs() >= 0.999).float().mean())}
    if references is not None:
        row["nearest_reference_distance"] = nearest_reference(features, references)
    if masks is not None:
        row["mask_visibility"] = mask_visibility(images, masks)
        row["mask_consistency_dice"] = mask_consistency(judge, images, masks)
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()
            if value is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a benchmark's output folder (holds stage1_pairs/ and aligned/)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/polyp"))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--judge", type=Path, default=None,
                        help="an exported source segmenter (default: RUN/run/source_segmenter/exported)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    config = bench_config(args.preset)
    aligned_folders = aligned_pair_folders(args.run)
    sets = sorted({set_name for set_name, _, _ in aligned_folders})
    data = load_polyp(args.data, args.preset, reference_sets=tuple(sets))
    judge = ExportedSegmenter.load(args.judge or args.run / "run" / "source_segmenter" / "exported", device="cpu")
    test_features = deep_features(data.test.images)
    test_diversity = mean_pairwise(test_features)
    rows: dict[str, dict] = {}

    def add(name: str, images: torch.Tensor, masks: torch.Tensor | None, references: torch.Tensor | None = None):
        rows[name] = describe(images, masks, deep_features(images), test_features, test_diversity, references, judge)
        print(name, json.dumps(rows[name]), flush=True)

    add("target_test (real)", data.test.images, data.test.masks)
    add("source_train (real)", data.source.images, data.source.masks)
    # Stage 1's pairs are the same for every set: described once, only their distance to each set's references differs.
    stage1 = load_pairs(args.run / "stage1_pairs", config.data)
    stage1_features = deep_features(stage1.images)
    stage1_row = describe(stage1.images, stage1.masks, stage1_features, test_features, test_diversity, None, judge)
    for name in sets:
        reference_features = deep_features(data.references[name].images)
        add(f"{name} references", data.references[name].images, None, reference_features)
        rows[f"{name} stage1"] = {**stage1_row, "nearest_reference_distance":
                                  round(nearest_reference(stage1_features, reference_features), 4)}
        print(f"{name} stage1", json.dumps(rows[f"{name} stage1"]), flush=True)
        for set_name, folder, real_masks in aligned_folders:
            if set_name != name:
                continue
            aligned = load_pairs(folder, config.data)
            add(f"{name} aligned{' (real masks)' if real_masks else ''}", aligned.images, aligned.masks,
                reference_features)
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "k_neighbours": NEIGHBOURS, "feature": "EL0 deep 1280-d",
                                        "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
