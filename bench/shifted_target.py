"""A copy of the polyp data whose target frames carry a known, added appearance shift: the positive control of
bench/shifted-target-cpu.sh, which asks whether alignment helps where the target's appearance is known to matter.

Only CVC-ClinicDB's images change (every frame, reference pool and test alike); its masks, Kvasir-SEG and
`splits.json` are linked, so `alignflow bench polyp --data OUT` runs the protocol unchanged, on the same frames,
reference sets and source pairs as the unshifted benchmark, and the two runs pair image by image.

The shift imitates another centre's camera, in three parts fixed before any result was seen:
  1. colour: a rotation of every pixel's RGB vector by --hue-degrees about the grey axis (brightness is kept, the
     hue turns: the reddish mucosa becomes green), which no per-channel curve can undo;
  2. tone: gamma --gamma on every channel (below 1 lifts the shadows);
  3. illumination fall-off: brightness times 1 - --vignette * rho^2, rho the distance from the frame centre over
     the half-diagonal.

    python bench/shifted_target.py --data ../shared/data/polyp --out bench/results/shifted-data-polyp

A finished copy (its shift.json written last) is reused when asked for again with the same settings and refused,
exit 2, with others, so the runs that read it always read the shift they were registered with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def hue_rotation(degrees: float) -> np.ndarray:
    """3×3 matrix that rotates RGB vectors about (1, 1, 1) (Rodrigues' formula): grey stays grey, and so does every
    pixel's mean over channels."""
    theta = math.radians(degrees)
    u = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return math.cos(theta) * np.eye(3) + math.sin(theta) * cross + (1 - math.cos(theta)) * np.outer(u, u)


def shift_image(rgb: np.ndarray, hue_degrees: float, gamma: float, vignette: float) -> np.ndarray:
    """uint8 H×W×3 in, uint8 H×W×3 out."""
    pixels = rgb.astype(np.float64) / 255.0
    pixels = np.clip(pixels @ hue_rotation(hue_degrees).T, 0.0, 1.0) ** gamma
    height, width = pixels.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    rho2 = ((y - cy) ** 2 + (x - cx) ** 2) / (cy ** 2 + cx ** 2)
    pixels = pixels * (1.0 - vignette * rho2)[..., None]
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        return
    os.symlink(target.resolve(), link)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/polyp"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hue-degrees", type=float, default=90.0)
    parser.add_argument("--gamma", type=float, default=0.6)
    parser.add_argument("--vignette", type=float, default=0.6)
    args = parser.parse_args()
    splits = json.loads((args.data / "splits.json").read_text())
    source, target = splits["source"]["dataset"], splits["target"]["dataset"]
    frames = sorted(p for p in (args.data / target / "images").iterdir() if p.is_file())
    settings = {"hue_degrees": args.hue_degrees, "gamma": args.gamma, "vignette": args.vignette,
                "frames": len(frames), "from": str(args.data.resolve())}
    record = args.out / "shift.json"
    if record.is_file():  # a finished copy: reused as it is, or refused if it was made with other settings
        written = json.loads(record.read_text())
        if written != settings:
            print(f"error: {record}: the copy was made with {written}, not {settings}; choose another --out",
                  file=sys.stderr)
            return 2
        print(f"{args.out} already holds this shift: {settings}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    _link(args.data / "splits.json", args.out / "splits.json")
    _link(args.data / source, args.out / source)
    shifted = args.out / target
    (shifted / "images").mkdir(parents=True, exist_ok=True)
    _link(args.data / target / "masks", shifted / "masks")
    if (args.data / target / "sequences.json").is_file():
        _link(args.data / target / "sequences.json", shifted / "sequences.json")
    for path in frames:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        out = shift_image(rgb, args.hue_degrees, args.gamma, args.vignette)
        Image.fromarray(out).save(shifted / "images" / f"{path.stem}.png")
    record.write_text(json.dumps(settings, indent=2) + "\n")              # last: marks the copy finished
    print(f"shifted {len(frames)} {target} frames into {shifted}: {settings}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
