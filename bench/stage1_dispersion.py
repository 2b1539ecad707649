"""Is stage 1's narrow brightness spread a training choice? Trains the benchmark preset's image generator on a source
folder under one or more `--set` variants (or reads existing checkpoints), samples one image for every mask of a
source-validation folder, and compares the samples with the real validation images:

- brightness: per-image mean intensity in [0, 1]; the mean over images and, the point of the script, their standard
  deviation across images (how varied the lighting of the samples is), against the real one;
- within-image contrast: the mean over images of each image's pixel standard deviation;
- lesion visibility: bench/pair_diagnostics.py's |inside − ring| contrast at the conditioning mask (on the [−1, 1]
  scale, as there: twice its [0, 1] value);
- FID-EL0 / KID-EL0 of the samples to the real validation images (source domain: no target image is read).

Why: on both polyp pairs the generated images' brightness spread is about half the real one (0.017–0.019 against
0.037 on CVC → Kvasir), and 48 sampler steps instead of 12 do not widen it, so the cause is in training. Stage 1
draws its flow-matching times from a logit-normal(0, 1) (SD3's choice for large latent models), which rarely visits
t near 0, where the global colour of a sample is decided; a uniform draw visits it as often as any other time.

    python bench/stage1_dispersion.py --source S --val V --work W [--preset cpu] \
        [--variant NAME=SETTING[,SETTING...]] [--checkpoint NAME=FILE] [--out FILE.json]

Variants are trained into W/NAME/image_generator.pt (resumable; a stored variant trained with other settings is an
error) with the benchmark's settings (bench_config of the preset) plus their own, under the preset's CPU precision
(bf16 autocast where the preset and the CPU have it, as the benchmark trains and samples); `--variant logit_normal=`
with nothing after `=` is the preset itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pair_diagnostics, also when imported from elsewhere
from AlignFlowLib.bench.protocol import BENCH_PRESETS, bench_config  # noqa: E402
from AlignFlowLib.checkpoint import load_checkpoint  # noqa: E402
from AlignFlowLib.config import ImageGeneratorConfig, from_dict, to_dict  # noqa: E402
from AlignFlowLib.device import set_cpu_bf16  # noqa: E402
from AlignFlowLib.data.folders import load_pairs  # noqa: E402
from AlignFlowLib.pipeline import load_image_generator  # noqa: E402
from AlignFlowLib.reward.features import load_feature_extractor  # noqa: E402
from AlignFlowLib.reward.metrics import generator_metrics, image_features  # noqa: E402
from AlignFlowLib.synthesis import generate_images  # noqa: E402
from AlignFlowLib.train.generators import train_image_generator  # noqa: E402
from pair_diagnostics import mask_visibility  # noqa: E402


def image_statistics(images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Brightness and contrast of images in [−1, 1] (reported on the [0, 1] scale) and the lesion's visibility."""
    unit = (images.float() + 1) / 2
    brightness = unit.mean(dim=(1, 2, 3))
    return {"brightness_mean": float(brightness.mean()), "brightness_sd_across_images": float(brightness.std()),
            "within_image_sd_mean": float(unit.flatten(1).std(dim=1).mean()),
            "lesion_visibility": mask_visibility(images, masks)}


# (key, header, format) of the image statistics, in print order
COLUMNS = [("brightness_mean", "brightness", ".3f"), ("brightness_sd_across_images", "sd_across", ".4f"),
           ("within_image_sd_mean", "within_sd", ".3f"), ("lesion_visibility", "lesion_vis", ".3f")]


def print_table(rows: dict[str, dict[str, float]], columns: list[tuple[str, str, str]]) -> None:
    """One line per row, aligned under the headers; a value a row lacks prints as nan."""
    width = max(len(name) for name in rows)
    print(f"{'':{width}}  " + "  ".join(header for _, header, _ in columns))
    for name, row in rows.items():
        cells = [f"{row.get(key, float('nan')):{len(header)}{spec}}" for key, header, spec in columns]
        print(f"{name:{width}}  " + "  ".join(cells))


def parse_named(values: list[str], what: str) -> dict[str, str]:
    named = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"{what} {value!r}: expected NAME=…")
        named[name] = rest
    return named


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="labelled source pairs (training)")
    parser.add_argument("--val", type=Path, required=True, help="labelled source-validation pairs (masks condition "
                                                                  "the samples; images are the real comparison)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the variants' checkpoints")
    parser.add_argument("--preset", default="cpu", help="benchmark preset whose stage-1 settings are used")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=SETTING[,SETTING...]: train the preset's image generator with these --set settings")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="NAME=FILE: an image generator trained elsewhere (e.g. a benchmark's run folder)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()

    base = bench_config(args.preset)
    bf16 = set_cpu_bf16(BENCH_PRESETS[args.preset].cpu_bf16)  # train and sample as the benchmark does
    source = load_pairs(args.source, base.data)
    val = load_pairs(args.val, base.data)
    device = torch.device("cpu")
    checkpoints = {name: Path(file) for name, file in parse_named(args.checkpoint, "--checkpoint").items()}
    settings: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name, text in parse_named(args.variant, "--variant").items():
        settings[name] = [s for s in text.split(",") if s]
        config = bench_config(args.preset, tuple(settings[name]))
        path = args.work / name / "image_generator.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = from_dict(ImageGeneratorConfig, load_checkpoint(path)["config"]) if path.is_file() else None
        if stored is not None and stored != config.image_generator:
            raise SystemExit(f"error: {path}: trained with other settings than variant {name!r}; choose a new --work")
        started = time.monotonic()
        train_image_generator(source, config.image_generator, config.data, device, path, resume=stored is not None)
        seconds[name] = round(time.monotonic() - started, 1)
        checkpoints[name] = path

    extractor = load_feature_extractor(base.align.feature_size_px, 1.0, device)
    seeds = list(range(len(val)))  # sample k from image-noise seed k, the same for every variant
    rows = {"real source-val": image_statistics(val.images, val.masks)}
    val_features = image_features(extractor, val.images)
    for name, path in checkpoints.items():
        model = load_image_generator(path, device)
        images = generate_images(model, val.masks, seeds, base.synthesis.sampler, device, compile_model=False)
        rows[name] = image_statistics(images, val.masks)
        metrics = generator_metrics(extractor, images, val.images, target_features=val_features)
        rows[name].update(fid_el0_to_val=metrics["fid_el0"], kid_el0_to_val=metrics["kid_el0"])
    report = {"source": str(args.source), "val": str(args.val), "preset": args.preset, "cpu_bf16": bf16,
              "num_val": len(val), "sampler": to_dict(base.synthesis.sampler), "variants": settings,
              "training_seconds": seconds, "checkpoints": {k: str(v) for k, v in checkpoints.items()}, "rows": rows}
    print_table(rows, COLUMNS + [("fid_el0_to_val", "fid_el0", ".1f"), ("kid_el0_to_val", "kid_el0", ".3f")])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
