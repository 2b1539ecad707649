"""Brightness, colour, contrast, lesion visibility and feature spread of every pair set a benchmark folder wrote (its
96-px source copy, stage 1's synthetic pairs, each reference set's aligned pairs) and of its reference images. Reads
no target test image and trains nothing, so it works for `bench pairs` folders too (bench/pair_diagnostics.py needs
the polyp layout and the test frames).

Distance to the references: for every reference set, each pair set's MMD² to it in the reward's own features (what
alignment lowers) and the multi-scale patch SWD to it (no network: colour and texture per pyramid level, finest
first, × 1000). Source and stage-1 pairs are measured against every set, aligned pairs against their own, and so are
the two non-generative restylings of the source pairs (histogram matching, FDA) for scale. Neither distance is the
truth; where they disagree (closer in the reward's features, not in patch SWD), what lowered the reward is something
only the extractor sees.

Feature spread is the RMS distance of a set's EfficientNet-Lite0 pooled features (the reward's deep features) to
their mean: it tells whether alignment narrowed what the generator draws (a collapse onto the K references) or not.
Feature shift is the distance of a set's feature mean from the source pairs' mean. When the folder holds the run's
judge (the frozen source segmenter), each set also gets the judge's mean Dice against its masks and the share of pairs
where the judge finds almost nothing (Dice < 0.05: a lesion the image does not show); sets made with
`synthesis.judge_keep_fraction` below 1 also show, from their manifest, the judge's mean Dice on all candidates.

    python bench/pair_statistics.py RUN_DIR [--preset cpu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from AlignFlowLib.baselines.fda import fourier_domain_adaptation  # noqa: E402
from AlignFlowLib.baselines.histogram import match_histograms  # noqa: E402
from AlignFlowLib.bench.protocol import bench_config  # noqa: E402
from AlignFlowLib.data.folders import load_pairs, load_references  # noqa: E402
from AlignFlowLib.reward.mmd import mmd2_unbiased  # noqa: E402
from AlignFlowLib.reward.features import dark_pixels  # noqa: E402
from AlignFlowLib.reward.patch_swd import patch_swd, pyramid_levels  # noqa: E402
from AlignFlowLib.segmenter.export import ExportedSegmenter  # noqa: E402
from AlignFlowLib.segmenter.metrics import mask_dice  # noqa: E402
from AlignFlowLib.train.align import reference_views  # noqa: E402
from stage1_dispersion import COLUMNS, image_statistics, print_table  # noqa: E402
from pair_diagnostics import aligned_pair_folders, deep_features  # noqa: E402


def colour_mean(images: torch.Tensor) -> list[float]:
    """Mean of each channel on the [0, 1] scale (R, G, B): a hue that brightness alone would not show."""
    return [round(float(v), 4) for v in ((images.float() + 1) / 2).mean(dim=(0, 2, 3))]


def tissue_colour_mean(images: torch.Tensor) -> list[float]:
    """Mean of each channel over tissue pixels only (the reward's `style_region=tissue` rule, `dark_pixels`): the
    colour without letterbox bars and black endoscope borders, whose share differs between datasets and would
    otherwise dominate a comparison of mean colours."""
    pixels = (images.float() + 1) / 2                                            # (N, C, H, W)
    tissue = (~dark_pixels(images.float())).float()                              # (N, 1, H, W)
    return [round(float(v), 4) for v in (pixels * tissue).sum(dim=(0, 2, 3)) / tissue.sum().clamp_min(1)]


def dark_share(images: torch.Tensor) -> float:
    """Share of pixels that are not tissue (letterbox bars, black endoscope border, dark lumen): how much of the
    frame is dark, which an all-pixel colour statistic can change without changing the tissue's colour."""
    return round(float(dark_pixels(images.float()).float().mean()), 4)


def feature_spread(features: torch.Tensor) -> float:
    """RMS distance of the rows to their mean."""
    return float((features - features.mean(0)).pow(2).sum(1).mean().sqrt())


def distances_to_references(images: torch.Tensor, features: torch.Tensor, views: torch.Tensor,
                            view_features: torch.Tensor) -> dict[str, float | list[float]]:
    """MMD² in the reward's features and patch SWD (× 1000 per level), both against the references' four flips as
    alignment sees them (`views`, with their deep features)."""
    levels = pyramid_levels(min(images.shape[-2:]))
    return {"reward_mmd2": float(mmd2_unbiased(features, view_features)),
            "patch_swd": [round(1000 * d, 2) for d in patch_swd(images, views, levels)]}


def print_distances(distances: dict[str, dict[str, dict]]) -> None:
    for set_name in sorted({name for rows in distances.values() for name in rows}):
        print(f"distance to references {set_name}: reward-feature MMD², patch SWD × 1000 per level (finest first)")
        for name, rows in distances.items():
            if set_name in rows:
                row = rows[set_name]
                print(f"  {name:<28} {row['reward_mmd2']:8.4f}   " + "  ".join(f"{d:7.2f}" for d in row["patch_swd"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a benchmark output folder")
    parser.add_argument("--preset", default="cpu", help="benchmark preset whose image size the folder used")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    config = bench_config(args.preset)
    data, feature_size_px = config.data, config.align.feature_size_px
    folders = {"source (real)": args.run / "source_pairs", "stage1": args.run / "stage1_pairs"}
    for set_name, folder, real_masks in aligned_pair_folders(args.run):
        folders[f"aligned {set_name}{' (real masks)' if real_masks else ''}"] = folder
    judge_dir = args.run / "run" / "source_segmenter" / "exported"
    judge = ExportedSegmenter.load(judge_dir) if (judge_dir / "model.json").is_file() else None
    reference_images = {set_dir.name: load_references(set_dir / "images", data).images
                        for set_dir in sorted((args.run / "references").glob("*"))}
    reference_views_of = {}
    for set_name, images in reference_images.items():  # the flips and their features, made once for every pair set
        views = reference_views(images)
        reference_views_of[set_name] = (views, deep_features(views, feature_size_px))
    rows, source_mean, distances = {}, None, {}
    for name, folder in folders.items():
        if (folder / "images").is_dir():
            pairs = load_pairs(folder, data)
            features = deep_features(pairs.images, feature_size_px)
            own_set = folder.parent.name if folder.parent.parent.name == "aligned" else None  # aligned pairs
            distances[name] = {set_name: distances_to_references(pairs.images, features, *views)
                               for set_name, views in reference_views_of.items() if own_set in (None, set_name)}
            if name == "source (real)":  # read first
                source_mean = features.mean(0)
                for restyle_name, restyle in (("histogram matching", match_histograms),
                                              ("FDA", fourier_domain_adaptation)):
                    restyled = distances[f"source, {restyle_name}"] = {}
                    for set_name, images in reference_images.items():
                        styled = restyle(pairs.images, images)
                        restyled[set_name] = distances_to_references(
                            styled, deep_features(styled, feature_size_px), *reference_views_of[set_name])
            rows[name] = {"count": len(pairs), **image_statistics(pairs.images, pairs.masks),
                          "colour_mean": colour_mean(pairs.images),
                          "tissue_colour_mean": tissue_colour_mean(pairs.images),
                          "dark_share": dark_share(pairs.images), "mask_area": float(pairs.masks.float().mean()),
                          "feature_spread": feature_spread(features)}
            if source_mean is not None:
                rows[name]["feature_shift_from_source"] = float((features.mean(0) - source_mean).norm())
            if judge is not None:
                dice = mask_dice(judge, pairs.images, pairs.masks)
                rows[name].update(judge_dice=float(dice.mean()), judge_misses=float((dice < 0.05).float().mean()))
            manifest = folder / "manifest.json"
            judged = json.loads(manifest.read_text()).get("judge_filter") if manifest.is_file() else None
            if judged:  # synthesis kept the pairs its judge segments best: how much better than all candidates
                rows[name].update(judge_dice_kept=judged["judge_dice_kept_mean"],
                                  judge_dice_candidates=judged["judge_dice_candidates_mean"])
    references = {}
    for set_name, images in reference_images.items():
        references[set_name] = {"count": len(images),
                                "brightness_mean": float(((images.float() + 1) / 2).mean()),
                                "colour_mean": colour_mean(images),
                                "tissue_colour_mean": tissue_colour_mean(images),
                                "dark_share": dark_share(images),
                                "feature_spread": feature_spread(deep_features(images, feature_size_px))}
    columns = [("count", "count", "d")] + COLUMNS + [("mask_area", "mask_area", ".3f"),
                                                    ("feature_spread", "feat_spread", ".2f"),
                                                    ("feature_shift_from_source", "feat_shift", ".2f")]
    if judge is not None:
        columns += [("judge_dice", "judge_dice", ".3f"), ("judge_misses", "judge_miss", ".3f")]
    if any("judge_dice_kept" in row for row in rows.values()):
        columns += [("judge_dice_kept", "judge_kept", ".3f"), ("judge_dice_candidates", "judge_all", ".3f")]
    print_table(rows, columns)
    for name, row in references.items():
        print(f"references {name}: {row['count']} images, brightness {row['brightness_mean']:.3f}, "
              f"colour {row['colour_mean']}, feature spread {row['feature_spread']:.2f}")
    for name, row in rows.items():
        print(f"{name}: colour {row['colour_mean']}, over tissue {row['tissue_colour_mean']}, "
              f"dark share {row['dark_share']}")
    print_distances(distances)
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "pairs": rows, "references": references,
                                        "distance_to_references": distances}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
