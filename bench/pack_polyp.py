"""Pack the protocol's polyp data at one working size, for a machine that cannot hold the originals (the GPU lender
takes at most 64 MiB with the code; the originals are 98 MB).

Every image and mask the protocol reads (source train + val, target test, the chosen reference sets) is resized with
the loader's own letterbox geometry and resampling, to the size the letterbox puts inside the square, and saved as
PNG. Loading the pack at the same `--size` then resizes nothing: masks come out identical and images differ from
loading the originals only by rounding to 8 bits after resizing (at most 0.5/255 before the [-1, 1] mapping).
`--check` loads the source validation images and the first 100 test images both ways and prints the largest
difference. The layout, `splits.json` and `sequences.json` are kept, so
`alignflow bench polyp --data PACK` runs the protocol unchanged.

    python bench/pack_polyp.py --data ../shared/data/polyp --size 128 --out .gpu/polyp [--references K10_seed0,…]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from AlignFlowLib.config import DataConfig
from AlignFlowLib.data.folders import load_pairs
from AlignFlowLib.data.io import prepare_image, prepare_mask, read_slices


def _by_stem(folder: Path) -> dict[str, Path]:
    return {path.stem: path for path in folder.iterdir() if path.is_file()}


def pack_one(image_path: Path, mask_path: Path | None, size: int, out_images: Path, out_masks: Path) -> None:
    """The image and mask as the loader makes them, cut to the part of the square the letterbox fills."""
    image = read_slices(image_path)[0]
    channels = 1 if image.ndim == 2 or image.shape[2] == 1 else 3
    square, box = prepare_image(image, size, channels, "letterbox")
    (oy, ox), (h, w) = box.offset_yx, box.resized_hw
    pixels = np.rint((square[:, oy:oy + h, ox:ox + w] + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(out_images / f"{image_path.stem}.png",
                                                                      optimize=True)
    if mask_path is not None:
        mask = prepare_mask(read_slices(mask_path)[0], size)
        Image.fromarray((mask[0, oy:oy + h, ox:ox + w] * 255).astype(np.uint8)).save(
            out_masks / f"{mask_path.stem}.png", optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/polyp"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--references", default=None, help="reference sets to keep (default: all)")
    parser.add_argument("--check", action="store_true", help="load pack and originals; print the largest difference")
    args = parser.parse_args()
    splits = json.loads((args.data / "splits.json").read_text())
    source, target = splits["source"], splits["target"]
    wanted_sets = args.references.split(",") if args.references else list(target["references"])
    reference_ids = sorted({i for name in wanted_sets for i in target["references"][name]})
    jobs = [(source["dataset"], source["train"] + source["val"], True),
            (target["dataset"], target["test"], True),
            (target["dataset"], reference_ids, False)]
    for dataset, ids, with_mask in jobs:
        images, masks = _by_stem(args.data / dataset / "images"), _by_stem(args.data / dataset / "masks")
        out_images, out_masks = args.out / dataset / "images", args.out / dataset / "masks"
        out_images.mkdir(parents=True, exist_ok=True)
        out_masks.mkdir(parents=True, exist_ok=True)
        for stem in map(str, ids):
            pack_one(images[stem], masks[stem] if with_mask else None, args.size, out_images, out_masks)
    shutil.copyfile(args.data / "splits.json", args.out / "splits.json")
    sequences = args.data / target["dataset"] / "sequences.json"
    if sequences.is_file():
        shutil.copyfile(sequences, args.out / target["dataset"] / "sequences.json")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"packed {args.out} at {args.size} px: {total / 2 ** 20:.1f} MiB")
    if args.check:
        config = DataConfig(image_size_px=args.size)
        for dataset, ids in ((source["dataset"], source["val"]), (target["dataset"], target["test"][:100])):
            packed = load_pairs(args.out / dataset, config, ids)
            original = load_pairs(args.data / dataset, config, ids)
            print(f"{dataset}: largest image difference {float((packed.images - original.images).abs().max()):.5f} "
                  f"(8-bit rounding bound {0.5 / 127.5:.5f}); masks equal: "
                  f"{bool(packed.masks.eq(original.masks).all())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
