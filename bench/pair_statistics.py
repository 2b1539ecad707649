"""Brightness, contrast and lesion visibility of every pair set a benchmark folder wrote (its 96-px source copy,
stage 1's synthetic pairs, each reference set's aligned pairs) and of its reference images. Reads no target test
image and trains nothing, so it works for `bench pairs` folders too (bench/pair_diagnostics.py needs the polyp
layout and the test frames).

    python bench/pair_statistics.py RUN_DIR [--preset cpu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from AlignFlowLib.bench.protocol import bench_config  # noqa: E402
from AlignFlowLib.data.folders import load_pairs, load_references  # noqa: E402
from stage1_dispersion import COLUMNS, image_statistics, print_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a benchmark output folder")
    parser.add_argument("--preset", default="cpu", help="benchmark preset whose image size the folder used")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    data = bench_config(args.preset).data
    folders = {"source (real)": args.run / "source_pairs", "stage1": args.run / "stage1_pairs"}
    for set_dir in sorted((args.run / "aligned").glob("*")):
        folders[f"aligned {set_dir.name}"] = set_dir / "pairs_generated_masks"
    rows = {}
    for name, folder in folders.items():
        if (folder / "images").is_dir():
            pairs = load_pairs(folder, data)
            rows[name] = {"count": len(pairs), **image_statistics(pairs.images, pairs.masks),
                          "mask_area": float(pairs.masks.float().mean())}
    references = {}
    for set_dir in sorted((args.run / "references").glob("*")):
        images = load_references(set_dir / "images", data).images
        references[set_dir.name] = {"count": len(images),
                                    "brightness_mean": float(((images.float() + 1) / 2).mean())}
    print_table(rows, [("count", "count", "d")] + COLUMNS + [("mask_area", "mask_area", ".3f")])
    for name, row in references.items():
        print(f"references {name}: {row['count']} images, brightness {row['brightness_mean']:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "pairs": rows, "references": references},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
