"""Frozen, typed configuration: one dataclass per stage, a default and a one-line comment per field.

CLI flags and the Slicer parameter node map onto these in one place each; run folders store them as `config.json`
and checkpoints as plain dicts, from which `from_dict` rebuilds them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional, Tuple, TypeVar

from .errors import AlignFlowError, UsageError

T = TypeVar("T")


# What a field allows, declared beside it (one source of truth): `validate` reads these from the annotations.

@dataclass(frozen=True)
class Range:
    """low ≤ value ≤ high (either end optional); `open_low` makes the lower bound strict."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False

    def problem(self, value: Any) -> Optional[str]:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"{'>' if self.open_low else '≥'} {self.low:g}"
        if self.high is not None and value > self.high:
            return f"≤ {self.high:g}"
        return None


@dataclass(frozen=True)
class OneOf:
    choices: Tuple[Any, ...]

    def problem(self, value: Any) -> Optional[str]:
        return None if value in self.choices else self.describe()

    def describe(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class MultipleOf:
    step: int

    def problem(self, value: Any) -> Optional[str]:
        return None if value % self.step == 0 else self.describe()

    def describe(self) -> str:
        return f"a multiple of {self.step}"


STEPS = Range(1, 10_000_000)
SEED = Range(0, 2**32 - 1)
POSITIVE = Range(0, None, open_low=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)


@dataclass(frozen=True)
class DataConfig:
    # working resolution (square); images are letterboxed to it
    image_size_px: Annotated[int, Range(16, 4096), MultipleOf(16)] = 64
    channels: Annotated[int, OneOf((1, 3))] = 3  # 3 = RGB, 1 = grey; inputs are converted to this
    # letterbox (pad, keep aspect) | stretch | crop (centre crop, keep aspect)
    resize_mode: Annotated[str, OneOf(("letterbox", "stretch", "crop"))] = "letterbox"
    # for 3-D volumes: image axis (0=x, 1=y, 2=z, SimpleITK order) to slice along
    slice_axis: Annotated[int, OneOf((0, 1, 2))] = 2
    keep_empty_slices: bool = False   # keep volume slices whose mask is empty when loading training pairs


@dataclass(frozen=True)
class SamplerConfig:
    method: Annotated[str, OneOf(("euler", "heun"))] = "euler"
    num_steps: Annotated[int, Range(1, 10_000)] = 20  # integration steps from noise (t=0) to data (t=1)
    guidance_scale: Annotated[float, Range(0, 100)] = 1.0  # classifier-free guidance on the mask; 1 = plain conditional


@dataclass(frozen=True)
class ImageGeneratorConfig:
    channels: Annotated[Tuple[int, ...], Range(1, 4096)] = (32, 64, 64)  # UNet widths per level
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: Annotated[int, Range(1, 16)] = 1  # residual blocks per level
    num_head_channels: Annotated[int, Range(1, 4096)] = 32  # attention head width
    norm_num_groups: Annotated[int, Range(1, 4096)] = 16
    mask_dropout: Annotated[float, FRACTION] = 0.1  # probability of dropping the mask (for classifier-free guidance)
    # extra weight of the flow-matching error inside the mask: a lesion pixel counts 1 + w times (0: plain mean)
    mask_loss_weight: Annotated[float, NON_NEGATIVE] = 0.0
    num_steps: Annotated[int, STEPS] = 2000  # optimiser steps
    batch_size: Annotated[int, Range(1, 65536)] = 16
    learning_rate: Annotated[float, Range(0, 10, open_low=True)] = 2e-4
    weight_decay: Annotated[float, Range(0, 10)] = 0.0
    ema_halflife_steps: Annotated[float, NON_NEGATIVE] = 100.0  # EMA half-life in optimiser steps
    t_sampling: Annotated[str, OneOf(("logit_normal", "uniform"))] = "logit_normal"
    t_logit_mean: Annotated[float, Range(-20, 20)] = 0.0
    t_logit_std: Annotated[float, Range(0, 20, open_low=True)] = 1.0
    grad_clip_norm: Annotated[float, POSITIVE] = 1.0
    checkpoint_every_steps: Annotated[int, STEPS] = 250  # also the most steps a killed run can lose
    seed: Annotated[int, SEED] = 0


@dataclass(frozen=True)
class MaskGeneratorConfig:
    channels: Annotated[Tuple[int, ...], Range(1, 4096)] = (16, 32, 64)
    attention_levels: tuple[bool, ...] = (False, False, False)
    num_res_blocks: Annotated[int, Range(1, 16)] = 1
    num_head_channels: Annotated[int, Range(1, 4096)] = 32
    norm_num_groups: Annotated[int, Range(1, 4096)] = 8
    # binary (mask in [-1, 1]) | sdf (clipped signed distance)
    target: Annotated[str, OneOf(("binary", "sdf"))] = "binary"
    num_steps: Annotated[int, STEPS] = 1500
    batch_size: Annotated[int, Range(1, 65536)] = 16
    learning_rate: Annotated[float, Range(0, 10, open_low=True)] = 2e-4
    ema_halflife_steps: Annotated[float, NON_NEGATIVE] = 100.0
    t_sampling: Annotated[str, OneOf(("logit_normal", "uniform"))] = "logit_normal"
    t_logit_mean: Annotated[float, Range(-20, 20)] = 0.0
    t_logit_std: Annotated[float, Range(0, 20, open_low=True)] = 1.0
    grad_clip_norm: Annotated[float, POSITIVE] = 1.0
    checkpoint_every_steps: Annotated[int, STEPS] = 250
    sampler_steps: Annotated[int, Range(1, 10_000)] = 20  # Euler steps when sampling masks
    min_area_fraction: Annotated[float, FRACTION] = 0.002  # islands smaller than this fraction of the image are removed
    fill_holes: bool = True
    max_train_iou: Annotated[float, Range(0, 2)] = 0.9  # reject masks that nearly duplicate a training mask
    seed: Annotated[int, SEED] = 1


@dataclass(frozen=True)
class AlignConfig:
    num_steps: Annotated[int, STEPS] = 200  # fine-tuning optimiser steps
    batch_size: Annotated[int, Range(2, 65536)] = 8  # generated images per reward estimate
    learning_rate: Annotated[float, Range(0, 10, open_low=True)] = 2e-5
    # full | lora (low-rank adapters on convolutions and linear layers)
    adapter: Annotated[str, OneOf(("full", "lora"))] = "full"
    lora_rank: Annotated[int, Range(1, 1024)] = 4
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(num_steps=10))
    # DRaFT-k: back-propagate through the last k sampler steps only
    grad_last_steps: Annotated[int, Range(1, 10_000)] = 1
    checkpoint_activations: bool = True
    kernel: Annotated[str, OneOf(("rbf", "kid"))] = "rbf"  # rbf (multi-bandwidth) | kid (cubic polynomial)
    feature_size_px: Annotated[int, Range(32, 1024)] = 96  # images are resized to this before the feature extractor
    # weight of early-layer channel mean/std (112-d) vs deep pooled (1280-d) features; 0 since benchmark protocol v2
    # (on a domain pair never used for tuning, weight 4 cost 3.5-5 mDice points; bench/PROTOCOL.md, Version 2)
    style_weight: Annotated[float, NON_NEGATIVE] = 0.0
    # all | tissue: the style statistics over every pixel, or weighted to leave out near-black pixels (letterbox
    # padding, an endoscope's black border; reward/features.py)
    style_region: Annotated[str, OneOf(("all", "tissue"))] = "all"
    # weight of a second MMD² on each image's colour over tissue (per-channel mean and std of the pixels,
    # reward/colour.py), beside the feature MMD²; with the rbf kernel each has its own bandwidth; 0 turns it off
    colour_weight: Annotated[float, NON_NEGATIVE] = 0.0
    # stage-1 flow-matching loss on source pairs (keeps the model a generator)
    anchor_weight: Annotated[float, NON_NEGATIVE] = 0.5
    # frozen source segmenter must find the conditioning mask
    mask_consistency_weight: Annotated[float, NON_NEGATIVE] = 0.1
    # holdout: early stopping on MMD² to references held out from the reward | all_references: reward uses all K;
    # stopping on MMD² to all K in block-10 statistics, a feature space the reward does not score | patch_swd: reward
    # uses all K; stopping on the multi-scale patch SWD to all K relative to stage 1's (no network, so no blind spot of
    # the reward's extractor can lower it)
    selection: Annotated[str, OneOf(("holdout", "all_references", "patch_swd"))] = "holdout"
    # share of the references held out from the reward (selection=holdout)
    holdout_fraction: Annotated[float, Range(0, 1, open_low=True)] = 0.4
    eval_every_steps: Annotated[int, STEPS] = 20
    eval_num_images: Annotated[int, Range(2, 100_000)] = 32
    # stop after this many evaluations without a better held-out MMD
    patience_evals: Annotated[int, Range(1, 100_000)] = 4
    clamp_reward_input: bool = True   # the reward sees images clipped to [-1, 1], as synthesis writes them
    # the reward compares random crops (60-100 % of the area) and flips of generated images and references, new at
    # every step, instead of the images themselves: appearance that survives a change of framing (reward/views.py;
    # an ablation that did not help the segmenter on either polyp pair)
    reward_views: bool = False
    # generated (as synthesis uses) | source: masks that condition the reward samples
    condition_masks: Annotated[str, OneOf(("generated", "source"))] = "generated"
    grad_clip_norm: Annotated[float, POSITIVE] = 1.0
    checkpoint_every_steps: Annotated[int, STEPS] = 50
    seed: Annotated[int, SEED] = 2


@dataclass(frozen=True)
class SynthesisConfig:
    num_pairs: Annotated[int, Range(1, 10_000_000)] = 64
    seed: Annotated[int, SEED] = 0  # pair k uses seed `seed + k`, whatever the batch size
    # generated (mask generator) | source (real source masks, the ablation)
    mask_source: Annotated[str, OneOf(("generated", "source"))] = "generated"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    batch_size: Annotated[int, Range(1, 65536)] = 16
    # 0: every image from pure noise. t0 in (0, 0.95]: translate instead (SDEdit, Meng et al. 2022): start at time t0
    # from the real source image of each mask (mask_source=source) mixed with noise, so the pair keeps its real
    # layout and exact mask and only the appearance is regenerated
    start_time: Annotated[float, Range(0, 0.95)] = 0.0
    # 1: keep every pair. f in [0.05, 1): draw num_pairs / f candidates (pair k still from seed `seed + k`) and keep the
    # num_pairs in which the run's frozen source segmenter (the judge) best finds the conditioning mask: pairs whose
    # image lost its lesion are label noise for the segmenter (FreeMask, Yang et al. 2023, filters on the same idea).
    # With translation the judge has seen the start images in training, so it mostly checks their lesion survived
    judge_keep_fraction: Annotated[float, Range(0.05, 1)] = 1.0


@dataclass(frozen=True)
class SegmenterConfig:
    architecture: Annotated[str, OneOf(("unet", "segresnet", "attentionunet", "basicunet"))] = "unet"
    num_steps: Annotated[int, STEPS] = 600
    batch_size: Annotated[int, Range(1, 65536)] = 16
    learning_rate: Annotated[float, Range(0, 10, open_low=True)] = 1e-3
    weight_decay: Annotated[float, Range(0, 10)] = 1e-5
    # share of each batch drawn from synthetic pairs when there are any
    synthetic_ratio: Annotated[float, FRACTION] = 0.5
    augment: bool = True              # flips, 90-degree rotations, mild intensity jitter
    strong_augment: bool = False      # add classic colour/blur/noise augmentation (used for the stage-2 judge)
    # > 0: evaluate/export an EMA of the weights (less seed-to-seed spread)
    ema_halflife_steps: Annotated[float, NON_NEGATIVE] = 0.0
    seed: Annotated[int, SEED] = 3


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


def _split_annotated(hint: Any) -> tuple[Any, tuple]:
    if typing.get_origin(hint) is Annotated:
        base, *constraints = typing.get_args(hint)
        return base, tuple(constraints)
    return hint, ()


def _type_problem(value: Any, hint: Any) -> Optional[str]:
    """What is wrong with `value`'s type for `hint` (bool is not an int here, and floats must be finite)."""
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "text"
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, tuple) or not value:
            return "a non-empty list"
        return next((f"a list of {p}" for p in (_type_problem(v, item) for v in value) if p), None)
    return None


def _cross_field_problems(config: Any) -> list[tuple[str, str]]:
    """(field, problem) for rules between fields of one section."""
    problems = []
    if isinstance(config, (ImageGeneratorConfig, MaskGeneratorConfig)):
        if len(config.attention_levels) != len(config.channels):
            problems.append(("attention_levels", f"one entry per level of channels ({len(config.channels)})"))
        if any(c % config.norm_num_groups for c in config.channels):
            problems.append(("norm_num_groups", f"a divisor of every channel width {list(config.channels)}"))
        attended = [c for c, a in zip(config.channels, config.attention_levels) if a] + list(config.channels[-1:])
        if any(c % config.num_head_channels for c in attended):  # the middle block always attends
            problems.append(("num_head_channels", f"a divisor of the attended widths {attended}"))
    if isinstance(config, SynthesisConfig) and config.start_time > 0 and config.mask_source != "source":
        problems.append(("start_time", "0 unless mask_source is source (translation starts from each mask's image)"))
    if isinstance(config, AlignConfig) and config.grad_last_steps > config.sampler.num_steps:
        problems.append(("grad_last_steps", f"≤ sampler.num_steps ({config.sampler.num_steps})"))
    return problems


def validate(config: Any, prefix: str = "") -> None:
    """Check every field of a (nested) config against its declared type and allowed values, before any work.

    Raises:
        UsageError: naming the first bad field (`section.field`), its value and what is allowed.
    """
    hints = typing.get_type_hints(type(config), include_extras=True)
    for item in dataclasses.fields(config):
        name, value = prefix + item.name, getattr(config, item.name)
        base, constraints = _split_annotated(hints[item.name])
        if dataclasses.is_dataclass(base):
            if not isinstance(value, base):
                raise UsageError(f"{name}: expected a {base.__name__} section, got {value!r}")
            validate(value, name + ".")
            continue
        wrong = _type_problem(value, base)
        if wrong:
            raise UsageError(f"{name} = {value!r}: must be {wrong}")
        for constraint in constraints:
            for element in (value if isinstance(value, tuple) else (value,)):
                problem = constraint.problem(element)
                if problem:
                    raise UsageError(f"{name} = {value!r}: must be {problem}")
    for field_name, problem in _cross_field_problems(config):
        raise UsageError(f"{prefix}{field_name} = {getattr(config, field_name)!r}: must be {problem}")


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
