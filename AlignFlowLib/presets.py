"""Named configurations: `demo` (phantoms, 2-core CPU, minutes) and `default` (real data on a GPU)."""

from __future__ import annotations

from .config import (AlignConfig, DataConfig, ImageGeneratorConfig, MaskGeneratorConfig, RunConfig, SamplerConfig,
                     SegmenterConfig, SynthesisConfig)
from .errors import choose

DEMO = RunConfig(
    data=DataConfig(image_size_px=32),
    image_generator=ImageGeneratorConfig(channels=(32, 64, 64), attention_levels=(False, False, False),
                                         num_steps=900, batch_size=16, learning_rate=1e-3,
                                         ema_halflife_steps=50, checkpoint_every_steps=100),
    mask_generator=MaskGeneratorConfig(channels=(16, 32, 32), num_steps=500, batch_size=16, learning_rate=1e-3,
                                       ema_halflife_steps=50, checkpoint_every_steps=100, sampler_steps=16),
    align=AlignConfig(num_steps=120, batch_size=8, learning_rate=1e-4, sampler=SamplerConfig(num_steps=8),
                      feature_size_px=64, eval_every_steps=10, eval_num_images=24, patience_evals=4,
                      checkpoint_every_steps=20),
    synthesis=SynthesisConfig(num_pairs=200, sampler=SamplerConfig(num_steps=12), batch_size=50),
    segmenter=SegmenterConfig(architecture="unet", num_steps=400, batch_size=16, learning_rate=2e-3,
                              strong_augment=True, ema_halflife_steps=40),  # the benchmark protocol's recipe
)

DEFAULT = RunConfig(
    data=DataConfig(image_size_px=128),
    image_generator=ImageGeneratorConfig(channels=(64, 128, 256, 256), attention_levels=(False, False, True, True),
                                         num_res_blocks=2, num_head_channels=32, norm_num_groups=32,
                                         num_steps=6000, batch_size=32, learning_rate=2e-4,
                                         ema_halflife_steps=500, checkpoint_every_steps=500),
    mask_generator=MaskGeneratorConfig(channels=(32, 64, 128, 128), attention_levels=(False, False, False, True),
                                       num_steps=3000, batch_size=32, ema_halflife_steps=300,
                                       checkpoint_every_steps=500),
    align=AlignConfig(num_steps=300, batch_size=16, learning_rate=2e-5, sampler=SamplerConfig(num_steps=16),
                      feature_size_px=128, eval_every_steps=25, checkpoint_every_steps=50),
    synthesis=SynthesisConfig(num_pairs=900, sampler=SamplerConfig(num_steps=24), batch_size=64),
    segmenter=SegmenterConfig(architecture="unet", num_steps=3000, batch_size=32),
)

PRESETS = {"demo": DEMO, "default": DEFAULT}


def preset(name: str) -> RunConfig:
    return choose("preset", name, PRESETS)
