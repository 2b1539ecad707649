"""Where the width of each paired interval of a benchmark run comes from, and how far more seeds could narrow it.

    python bench/interval_budget.py RUN [RUN ...] [--test-images FOLDER] [--out FILE.json]

For AlignFlow − stage-1 synthetic and AlignFlow − source-only at every K of each run, it splits the variance of the
paired differences into test sequences (clusters), segmenters (reference set × seed) and their interaction
(`AlignFlowLib.bench.stats.interval_budget`), and prints the cluster-bootstrap interval the protocol reports beside
the normal approximation's half-width now, with three times the seeds, with unlimited seeds (same reference sets),
its floor (unlimited seeds and reference sets on the same test sequences), and the smallest true difference whose
interval would clear 0 four times in five, now and at the floor. Units:
mDice points. With --test-images (the target test images, file stems = the run's test names) it also relates
each sequence's mean difference to the sequence's mean image brightness, which is what located the between-sequence
spread here. It reads scores and test images only to explain an interval; it chooses nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from AlignFlowLib.bench.protocol import stored_dice_array  # noqa: E402
from AlignFlowLib.bench.stats import cluster_sums, interval_budget, paired_difference  # noqa: E402
from AlignFlowLib.config import DataConfig  # noqa: E402
from AlignFlowLib.data.folders import load_references  # noqa: E402

COMPARISONS = ("stage1_synthetic", "source_only")


@functools.lru_cache(maxsize=4)
def image_brightness(folder: Path, names: tuple[str, ...]) -> np.ndarray:
    """Mean intensity in [0, 1] of each named image (stretched to 96 px, so no letterbox padding counts)."""
    images = load_references(folder, DataConfig(image_size_px=96, resize_mode="stretch"), list(names)).images
    return ((images.float() + 1) / 2).mean(dim=(1, 2, 3)).numpy()


def budget_of_run(run_dir: Path, test_images: Path | None = None) -> dict:
    """{K: {other method: numbers}} for every K at which the run has AlignFlow and the other method."""
    scores = json.loads((run_dir / "per_image_dice.json").read_text())
    brightness = None
    if test_images is not None:
        sums, counts, names = cluster_sums(image_brightness(test_images, tuple(scores["test_names"])), scores["clusters"])
        brightness = sums / counts
    dice, clusters = scores["dice"], scores["clusters"]
    if "alignflow" not in dice:
        return {}
    by_k: dict[str, list[str]] = {}
    for name in dice["alignflow"]:
        by_k.setdefault(name.split("_")[0], []).append(name)
    out: dict = {}
    for k, sets in sorted(by_k.items(), key=lambda item: -int(item[0][1:])):
        sets = sorted(sets)
        mine = stored_dice_array(scores, "alignflow", sets)
        for other in COMPARISONS:
            if other not in dice:
                continue
            theirs = stored_dice_array(scores, other, sets)
            if theirs.shape != mine.shape:
                continue
            a, b = 100 * mine, 100 * theirs
            try:
                parts = interval_budget(a, b, clusters)
            except ValueError as error:  # e.g. one reference set or one seed: no components to separate
                print(f"{run_dir.name} {k} AlignFlow − {other}: skipped ({error})", file=sys.stderr)
                continue
            boot = paired_difference(a, b, clusters)
            many = 10 ** 9
            out.setdefault(k, {})[other] = {
                "mean_diff": boot.mean_diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high,
                "bootstrap_half_width": (boot.ci_high - boot.ci_low) / 2,
                "sd_clusters": parts.sd_clusters, "sd_reference_sets": parts.sd_reference_sets,
                "sd_seeds": parts.sd_seeds, "sd_set_seed": parts.sd_set_seed, "sd_residual": parts.sd_residual,
                "num_clusters": parts.num_clusters, "num_reference_sets": parts.num_reference_sets,
                "num_seeds": parts.num_seeds,
                "half_width_normal": parts.half_width(),
                "half_width_3x_seeds": parts.half_width(num_seeds=3 * parts.num_seeds),
                "half_width_many_seeds": parts.half_width(num_seeds=many),
                "half_width_floor": parts.floor(),
                "detectable_effect": parts.detectable_effect(),
                "detectable_effect_many_seeds_and_sets": parts.detectable_effect(many, many),
            }
            if brightness is not None:  # cluster order of cluster_sums: sorted names, as for the differences
                sequence_diff = cluster_sums((a - b).mean(axis=(0, 1)), clusters)
                per_sequence = sequence_diff[0] / sequence_diff[1]
                out[k][other]["sequences"] = {name: {"brightness": float(level), "mean_diff": float(diff)}
                                              for name, level, diff in zip(names, brightness, per_sequence)}
                out[k][other]["brightness_correlation"] = float(np.corrcoef(brightness, per_sequence)[0, 1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="benchmark output folders (per_image_dice.json inside)")
    parser.add_argument("--test-images", type=Path, default=None,
                        help="folder of the target test images (stems = test names): relate each sequence's "
                             "difference to its mean brightness")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    result = {}
    header = ("run", "K", "AlignFlow −", "mean", "bootstrap CI", "SD seq", "SD set", "SD seed", "SD set×seed",
              "SD resid", "±now", "±3x seeds", "±many seeds", "±floor", "detectable", "detectable (floor)",
              "r(brightness)")
    print(" | ".join(header))
    for run_dir in args.runs:
        if not (run_dir / "per_image_dice.json").is_file():
            raise SystemExit(f"error: {run_dir}: no per_image_dice.json (not a finished benchmark output folder)")
        result[run_dir.name] = budget = budget_of_run(run_dir, args.test_images)
        for k, rows in budget.items():
            for other, r in rows.items():
                print(f"{run_dir.name} | {k} | {other} | {r['mean_diff']:+.1f} | [{r['ci_low']:+.1f}, "
                      f"{r['ci_high']:+.1f}] | {r['sd_clusters']:.1f} | {r['sd_reference_sets']:.1f} | "
                      f"{r['sd_seeds']:.1f} | {r['sd_set_seed']:.1f} | {r['sd_residual']:.1f} | "
                      f"{r['half_width_normal']:.1f} | {r['half_width_3x_seeds']:.1f} | "
                      f"{r['half_width_many_seeds']:.1f} | {r['half_width_floor']:.1f} | "
                      f"{r['detectable_effect']:.1f} | {r['detectable_effect_many_seeds_and_sets']:.1f} | "
                      f"{r.get('brightness_correlation', float('nan')):+.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
