"""Paired differences between methods of two benchmark runs that share test images, reference sets and segmenter
seeds (an ablation against the protocol run it reuses stage 1 from): the same cluster bootstrap as within one run.

    python bench/compare_runs.py RUN_A:METHOD RUN_B:METHOD [RUN_A:METHOD RUN_B:METHOD ...] [--sets K10_seed0,...]
                                 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from AlignFlowLib.bench.protocol import stored_dice_array  # noqa: E402
from AlignFlowLib.bench.stats import paired_difference  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="RUN_DIR:METHOD, in pairs (a − b)")
    parser.add_argument("--sets", default="K10_seed0,K10_seed1,K10_seed2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give RUN_DIR:METHOD arguments in pairs")
    sets, result = args.sets.split(","), {}
    for a_spec, b_spec in zip(args.pairs[::2], args.pairs[1::2]):
        (a_dir, a_method), (b_dir, b_method) = a_spec.rsplit(":", 1), b_spec.rsplit(":", 1)
        a_run = json.loads((Path(a_dir) / "per_image_dice.json").read_text())
        b_run = json.loads((Path(b_dir) / "per_image_dice.json").read_text())
        if a_run["test_names"] != b_run["test_names"] or a_run["clusters"] != b_run["clusters"]:
            raise SystemExit(f"error: {a_dir} and {b_dir} were scored on different test images")
        seeds = sorted(set(next(iter(a_run["dice"][a_method].values()))), key=int)
        a = stored_dice_array(a_run, a_method, sets, seeds)
        b = stored_dice_array(b_run, b_method, sets, seeds)
        diff = paired_difference(a, b, a_run["clusters"])
        name = f"{a_spec} - {b_spec}"
        result[name] = {"mean_diff": diff.mean_diff, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                        "mean_a": float(a.mean()), "mean_b": float(b.mean()), "reference_sets": sets,
                        "seeds": seeds, "num_clusters": diff.num_clusters}
        print(f"{name}: {100 * diff.mean_diff:+.1f} [{100 * diff.ci_low:+.1f}, {100 * diff.ci_high:+.1f}] mDice "
              f"points ({100 * a.mean():.1f} vs {100 * b.mean():.1f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
