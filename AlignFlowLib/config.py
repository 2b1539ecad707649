"""Frozen, typed configuration: one dataclass per stage, a default and a one-line comment per field.

CLI flags and the Slicer parameter node map onto these in one place each; run folders store them as `config.json`
and checkpoints as plain dicts, from which `from_dict` rebuilds them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import AlignFlowError, UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    image_size_px: int = 64           # working resolution (square); images are letterboxed to it
    channels: int = 3                 # 3 = RGB, 1 = grey; inputs are converted to this
    resize_mode: str = "letterbox"    # letterbox (pad, keep aspect) | stretch | crop (centre crop, keep aspect)
    slice_axis: int = 2               # for 3-D volumes: image axis (0=x, 1=y, 2=z, SimpleITK order) to slice along
    keep_empty_slices: bool = False   # keep volume slices whose mask is empty when loading training pairs


@dataclass(frozen=True)
class SamplerConfig:
    method: str = "euler"             # euler | heun
    num_steps: int = 20               # integration steps from noise (t=0) to data (t=1)
    guidance_scale: float = 1.0       # classifier-free guidance on the mask; 1 = plain conditional


@dataclass(frozen=True)
class ImageGeneratorConfig:
    channels: tuple[int, ...] = (32, 64, 64)            # UNet widths per level
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1           # residual blocks per level
    num_head_channels: int = 32       # attention head width
    norm_num_groups: int = 16
    mask_dropout: float = 0.1         # probability of dropping the mask (for classifier-free guidance)
    num_steps: int = 2000             # optimiser steps
    batch_size: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    ema_halflife_steps: float = 100.0  # EMA half-life in optimiser steps
    t_sampling: str = "logit_normal"  # logit_normal | uniform
    t_logit_mean: float = 0.0
    t_logit_std: float = 1.0
    grad_clip_norm: float = 1.0
    checkpoint_every_steps: int = 250  # also the most steps a killed run can lose
    seed: int = 0


@dataclass(frozen=True)
class MaskGeneratorConfig:
    channels: tuple[int, ...] = (16, 32, 64)
    attention_levels: tuple[bool, ...] = (False, False, False)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 8
    target: str = "binary"            # binary (mask in [-1, 1]) | sdf (clipped signed distance)
    num_steps: int = 1500
    batch_size: int = 16
    learning_rate: float = 2e-4
    ema_halflife_steps: float = 100.0
    t_sampling: str = "logit_normal"
    t_logit_mean: float = 0.0
    t_logit_std: float = 1.0
    grad_clip_norm: float = 1.0
    checkpoint_every_steps: int = 250
    sampler_steps: int = 20           # Euler steps when sampling masks
    min_area_fraction: float = 0.002  # islands smaller than this fraction of the image are removed
    fill_holes: bool = True
    max_train_iou: float = 0.9        # reject masks that nearly duplicate a training mask
    seed: int = 1


@dataclass(frozen=True)
class AlignConfig:
    num_steps: int = 200              # fine-tuning optimiser steps
    batch_size: int = 8               # generated images per reward estimate
    learning_rate: float = 2e-5
    adapter: str = "full"             # full | lora (low-rank adapters on convolutions and linear layers)
    lora_rank: int = 4
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(num_steps=10))
    grad_last_steps: int = 1          # DRaFT-k: back-propagate through the last k sampler steps only
    checkpoint_activations: bool = True
    kernel: str = "rbf"               # rbf (multi-bandwidth) | kid (cubic polynomial)
    feature_size_px: int = 96         # images are resized to this before the feature extractor
    style_weight: float = 4.0         # weight of early-layer channel mean/std (112-d) vs deep pooled (1280-d) features
    anchor_weight: float = 0.5        # stage-1 flow-matching loss on source pairs (keeps the model a generator)
    mask_consistency_weight: float = 0.1  # frozen source segmenter must find the conditioning mask
    selection: str = "holdout"        # holdout: early stopping on MMD² to references held out from the reward |
                                      # all_references: reward uses all K; stopping on MMD² to all K in block-10
                                      # statistics, a feature space the reward does not score
    holdout_fraction: float = 0.4     # share of the references held out from the reward (selection=holdout)
    eval_every_steps: int = 20
    eval_num_images: int = 32
    patience_evals: int = 4           # stop after this many evaluations without a better held-out MMD
    clamp_reward_input: bool = True   # the reward sees images clipped to [-1, 1], as synthesis writes them
    condition_masks: str = "generated"  # generated (as synthesis uses) | source: masks that condition the reward samples
    grad_clip_norm: float = 1.0
    checkpoint_every_steps: int = 50
    seed: int = 2


@dataclass(frozen=True)
class SynthesisConfig:
    num_pairs: int = 64
    seed: int = 0                     # pair k uses seed `seed + k`, whatever the batch size
    mask_source: str = "generated"    # generated (mask generator) | source (real source masks, the ablation)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    batch_size: int = 16


@dataclass(frozen=True)
class SegmenterConfig:
    architecture: str = "unet"        # unet | segresnet | attentionunet | basicunet
    num_steps: int = 600
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    synthetic_ratio: float = 0.5      # share of each batch drawn from synthetic pairs when there are any
    augment: bool = True              # flips, 90-degree rotations, mild intensity jitter
    strong_augment: bool = False      # add classic colour/blur/noise augmentation (used for the stage-2 judge)
    ema_halflife_steps: float = 0.0   # > 0: evaluate/export an EMA of the weights (less seed-to-seed spread)
    seed: int = 3


@dataclass(frozen=True)
class RunConfig:
    """Everything one `alignflow run` / `demo` does, as stored in the run folder's `config.json`."""

    data: DataConfig = field(default_factory=DataConfig)
    image_generator: ImageGeneratorConfig = field(default_factory=ImageGeneratorConfig)
    mask_generator: MaskGeneratorConfig = field(default_factory=MaskGeneratorConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Rebuild a config, nested configs and tuples included; unknown keys are an error that names them."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise AlignFlowError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def replace(config: T, **changes: Any) -> T:
    return dataclasses.replace(config, **changes)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse_value(text: str, hint: Any, name: str) -> Any:
    try:
        if hint is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError(text)
            return text.lower() in _TRUE
        if hint in (int, float, str):
            return hint(text)
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            return tuple(_parse_value(part.strip(), item, name) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--set {name}={text}: not a valid {getattr(hint, '__name__', hint)}") from None
    raise UsageError(f"--set {name}: this option cannot be set from the command line")


def apply_overrides(config: RunConfig, assignments: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply `section.field=value` assignments (e.g. `align.learning_rate=3e-5`, `align.sampler.num_steps=4`).

    This is how ablations change one setting without a new preset; the result is stored in the run's config,
    so every results file says exactly what was run.
    """
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        path = [part for part in name.strip().split(".") if part]
        if not sep or len(path) < 2:
            raise UsageError(f"--set {assignment!r}: expected section.field=value, e.g. align.learning_rate=3e-5")
        config = _override(config, path, text.strip(), name.strip())
    return config


def _override(config: Any, path: list[str], text: str, name: str) -> Any:
    fields = {f.name for f in dataclasses.fields(config)}
    if path[0] not in fields:
        raise UsageError(f"--set {name}: {type(config).__name__} has no option {path[0]!r}; "
                         f"options: {', '.join(sorted(fields))}")
    current = getattr(config, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise UsageError(f"--set {name}: {path[0]!r} is not a section")
        return replace(config, **{path[0]: _override(current, path[1:], text, name)})
    if dataclasses.is_dataclass(current):
        raise UsageError(f"--set {name}: {path[0]!r} is a section; name one of its options")
    hint = typing.get_type_hints(type(config))[path[0]]
    return replace(config, **{path[0]: _parse_value(text, hint, name)})
