"""A known-answer segmenter that is still a real exported MONAI network: SegResNet with batch norm (identity in eval
mode at default statistics) whose weights make the logit 20·relu(x₀) − 0.2, i.e. foreground where the first input
channel is above 0.01 (bright pixels after the library's [−1, 1] scaling). Tests of geometry and plumbing need an
answer they can predict; the export format only takes networks it can rebuild, so this is one of those."""

from __future__ import annotations

from pathlib import Path

import torch

from AlignFlowLib.segmenter.export import export_segmenter
from AlignFlowLib.segmenter.model import build_from_description, network_description


def threshold_network(in_channels: int = 1) -> tuple[torch.nn.Module, dict]:
    description = network_description("segresnet", in_channels)
    description["args"]["norm"] = "batch"
    model = build_from_description(description)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.fill_(1.0)  # scale 1 at the default running statistics: identity in eval mode
        model.convInit.conv.weight[0, 0, 1, 1] = 1.0         # feature 0 = x₀ (3×3 kernel centre)
        final = model.conv_final[-1].conv
        final.weight[0, 0] = 20.0
        final.bias.fill_(-0.2)
    return model.eval(), description


def export_threshold_segmenter(folder: Path, in_channels: int = 1, image_size_px: int = 32) -> Path:
    model, description = threshold_network(in_channels)
    return export_segmenter(model, folder, architecture="segresnet", in_channels=in_channels,
                            image_size_px=image_size_px, network=description)
