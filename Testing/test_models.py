"""Velocity network conditioning and low-rank adapters."""

import torch

from AlignFlowLib.models import build_velocity_unet, drop_masks, guided_velocity
from AlignFlowLib.models.lora import LoRAConv2d, apply_lora, merge_lora

from conftest import tiny_config


def _model():
    torch.manual_seed(0)
    model = build_velocity_unet(3, 1, tiny_config().image_generator).eval()
    with torch.no_grad():  # MONAI zero-initialises the output layer; give every weight a value
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def test_mask_changes_the_velocity_and_dropped_mask_is_unconditional():
    model = _model()
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.5)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    with torch.no_grad():
        conditional = model(x, t, mask)
        dropped = model(x, t, drop_masks(mask, probability=1.0))
        unconditional = model(x, t, None)
    assert not torch.allclose(conditional, dropped)
    assert torch.allclose(dropped, unconditional)


def test_guidance_scale_one_equals_conditional_and_extrapolates_otherwise():
    model = _model()
    x, t = torch.randn(1, 3, 16, 16), torch.full((1,), 0.3)
    mask = torch.ones(1, 1, 16, 16)
    with torch.no_grad():
        v_c, v_u = model(x, t, mask), model(x, t, None)
        assert torch.allclose(guided_velocity(model, mask, 1.0)(x, t), v_c)
        assert torch.allclose(guided_velocity(model, mask, 2.0)(x, t), v_u + 2 * (v_c - v_u), atol=1e-5)


def test_lora_starts_as_identity_trains_only_adapters_and_merges_exactly():
    model = _model()
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.7)
    with torch.no_grad():
        reference = model(x, t, None)
    apply_lora(model, rank=2)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".down." in name or ".up." in name for name in trainable)
    with torch.no_grad():
        assert torch.allclose(model(x, t, None), reference, atol=1e-6)      # up-projections start at zero
        for module in model.modules():
            if isinstance(module, LoRAConv2d):
                module.up.weight.normal_(0, 0.05)
        adapted = model(x, t, None)
    assert not torch.allclose(adapted, reference, atol=1e-4)
    merge_lora(model)
    assert not any(isinstance(m, LoRAConv2d) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(x, t, None), adapted, atol=1e-4)
