"""Path, samplers, EMA and truncated back-propagation: known answers."""

import math

import pytest
import torch

from AlignFlowLib.flow import flow_matching_loss, interpolate, make_ema, sample_ode, sample_time, update_ema


def test_path_endpoints_and_velocity_target():
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    at_noise = interpolate(x0, x1, torch.zeros(4))
    at_data = interpolate(x0, x1, torch.ones(4))
    middle = interpolate(x0, x1, torch.full((4,), 0.25))
    assert torch.allclose(at_noise.x_t, x0)
    assert torch.allclose(at_data.x_t, x1)
    assert torch.allclose(middle.x_t, 0.75 * x0 + 0.25 * x1)
    assert torch.allclose(middle.target, x1 - x0)
    # Following the target velocity from x_t for the remaining time lands on the data.
    assert torch.allclose(middle.x_t + 0.75 * middle.target, x1, atol=1e-6)


def test_flow_matching_loss_is_zero_for_the_exact_velocity():
    sample = interpolate(torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.rand(2))
    assert flow_matching_loss(sample.target, sample).item() == 0.0
    assert flow_matching_loss(sample.target + 1, sample).item() == pytest.approx(1.0)


@pytest.mark.parametrize("scheme", ["logit_normal", "uniform"])
def test_time_samples_lie_in_the_open_interval(scheme):
    t = sample_time(10_000, scheme, generator=torch.Generator().manual_seed(0))
    assert t.min() > 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.02


def test_unknown_time_scheme_lists_choices():
    with pytest.raises(Exception, match="logit_normal"):
        sample_time(4, "cosine")


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_constant_velocity_is_integrated_exactly(method):
    x0 = torch.randn(3, 2, 4, 4)
    velocity = torch.randn(1, 2, 4, 4)
    x1 = sample_ode(lambda x, t: velocity.expand_as(x), x0, method, num_steps=7)
    assert torch.allclose(x1, x0 + velocity, atol=1e-6)


def test_sampling_from_a_start_time_integrates_only_the_rest_of_the_path():
    # v = t, linear in time: Heun (trapezoidal) is exact, so x(1) = x(t0) + (1 − t0²) / 2.
    x_start = torch.zeros(2, 1, 3, 3)
    for start_time in (0.0, 0.5, 0.8):
        x1 = sample_ode(lambda x, t: t.view(-1, 1, 1, 1).expand_as(x), x_start, "heun", 4, start_time=start_time)
        assert torch.allclose(x1, torch.full_like(x1, (1 - start_time ** 2) / 2), atol=1e-6), start_time
    with pytest.raises(ValueError, match="start_time"):
        sample_ode(lambda x, t: x, x_start, "euler", 4, start_time=1.0)


def _linear_field_error(method: str, num_steps: int, a: float = 1.5) -> float:
    x0 = torch.ones(1, 1, 1, 1, dtype=torch.float32)
    x1 = sample_ode(lambda x, t: a * x, x0, method, num_steps)
    return abs(x1.item() - math.exp(a))


def test_euler_is_first_order_and_heun_second_order():
    euler_ratio = _linear_field_error("euler", 20) / _linear_field_error("euler", 40)
    heun_ratio = _linear_field_error("heun", 20) / _linear_field_error("heun", 40)
    assert 1.8 < euler_ratio < 2.2      # halving h halves the error: O(h)
    assert 3.6 < heun_ratio < 4.4       # halving h quarters the error: O(h²)


def test_plain_sampling_keeps_no_graph():
    weight = torch.nn.Parameter(torch.tensor(0.5))
    x1 = sample_ode(lambda x, t: weight * x, torch.ones(2, 1, 2, 2), "euler", 4)
    assert not x1.requires_grad


class _TinyField(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) * t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_truncated_backprop_gives_gradients_only_through_last_steps(method):
    field = _TinyField()
    x1 = sample_ode(field, torch.randn(2, 4, 8, 8), method, num_steps=6, grad_last_steps=2,
                    checkpoint_activations=True)
    x1.square().mean().backward()
    assert field.conv.weight.grad is not None and field.conv.weight.grad.abs().sum() > 0


def test_truncated_backprop_matches_full_backprop_when_k_equals_n():
    torch.manual_seed(0)
    field = _TinyField()
    x0 = torch.randn(2, 4, 8, 8)
    sample_ode(field, x0, "euler", 3, grad_last_steps=3, checkpoint_activations=True).sum().backward()
    grad_checkpointed = field.conv.weight.grad.clone()
    field.zero_grad()
    sample_ode(field, x0, "euler", 3, grad_last_steps=3, checkpoint_activations=False).sum().backward()
    assert torch.allclose(grad_checkpointed, field.conv.weight.grad, atol=1e-6)


def _graph_bytes(num_steps: int, grad_last_steps: int, checkpoint_activations: bool) -> int:
    """Bytes of tensors autograd keeps for the backward pass of one sampler run with N steps.

    On CPU there is no allocator peak counter, but what back-propagation holds on to is exactly the saved tensors.
    """
    torch.manual_seed(0)
    field = torch.nn.Sequential(torch.nn.Conv2d(8, 32, 3, padding=1), torch.nn.SiLU(),
                                torch.nn.Conv2d(32, 8, 3, padding=1))
    x0 = torch.randn(4, 8, 24, 24)
    saved = {}

    def pack(tensor):
        saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        x1 = sample_ode(lambda x, t: field(x), x0, "heun", num_steps, grad_last_steps, checkpoint_activations)
    x1.square().mean().backward()
    assert field[0].weight.grad.abs().sum() > 0
    return sum(saved.values())


def test_truncated_backprop_memory_does_not_grow_with_steps():
    truncated = {n: _graph_bytes(n, grad_last_steps=1, checkpoint_activations=True) for n in (4, 32)}
    full = {n: _graph_bytes(n, grad_last_steps=n, checkpoint_activations=False) for n in (4, 32)}
    assert truncated[32] == truncated[4]
    assert full[32] > 4 * full[4]          # the measure does see a graph that grows with N
    assert truncated[4] < full[4]


def test_ema_halflife():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = make_ema(model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(10):
        update_ema(ema, model, halflife_steps=10)
    assert ema.weight.item() == pytest.approx(0.5, abs=1e-6)
    assert not ema.weight.requires_grad


def test_a_loss_that_turns_non_finite_stops_training_before_any_checkpoint_holds_it(tmp_path):
    """The loop reads its loss only at report and save steps; a NaN between them must still stop it before the next
    save, and the checkpoint on disk stays the last finite one."""
    from AlignFlowLib.checkpoint import load_checkpoint
    from AlignFlowLib.config import ImageGeneratorConfig, replace
    from AlignFlowLib.errors import TrainingDivergedError
    from AlignFlowLib.train.flow_matching import train_flow_model

    config = replace(ImageGeneratorConfig(channels=(8, 8), attention_levels=(False, False), norm_num_groups=4,
                                          num_head_channels=8),
                     num_steps=30, batch_size=2, checkpoint_every_steps=5)
    calls = {"n": 0}

    def batch(generator: torch.Generator):
        calls["n"] += 1
        x1 = torch.rand(2, 1, 8, 8, generator=generator)
        if calls["n"] == 7:                              # step 7: after the save at 5, before the report at 10
            x1[0, 0, 0, 0] = float("nan")
        return x1, None

    path = tmp_path / "flow.pt"
    with pytest.raises(TrainingDivergedError, match="non-finite loss by step 10"):
        train_flow_model("test", batch, config, {"data_channels": 1, "condition_channels": 0}, torch.device("cpu"),
                         path)
    state = load_checkpoint(path)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_lesion_weight_counts_the_mask_more_and_keeps_the_loss_scale():
    from AlignFlowLib.train.generators import lesion_loss_weight

    masks = torch.zeros(4, 1, 8, 8)
    masks[:, :, :4, :4] = 1                                    # a quarter of every mask is lesion
    assert lesion_loss_weight(masks, 0.0) is None              # the plain mean, unchanged
    weight = lesion_loss_weight(masks, 3.0)
    weights = weight(masks)
    assert weights.mean().item() == pytest.approx(1.0)         # the usual loss scale over the training masks
    assert weights[0, 0, 0, 0].item() == pytest.approx(4 * weights[0, 0, 7, 7].item())
    dropped = weight(torch.full_like(masks, 0.5))               # unconditional rows: every pixel alike
    assert torch.all(dropped == weights[0, 0, 7, 7])

    sample = interpolate(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8), torch.rand(4))
    error_inside = masks.expand(-1, 3, -1, -1).clone()         # a velocity error of 1 on the lesion only
    plain = flow_matching_loss(sample.target + error_inside, sample).item()
    weighted = flow_matching_loss(sample.target + error_inside, sample, weights).item()
    assert plain == pytest.approx(0.25) and weighted == pytest.approx(0.25 * 4 / 1.75)


def test_the_training_loop_applies_the_loss_weight(tmp_path):
    """Zero weight everywhere: no gradient, so the weights stay where they started (no weight decay)."""
    from AlignFlowLib.config import ImageGeneratorConfig, replace
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.train.flow_matching import train_flow_model

    config = replace(ImageGeneratorConfig(channels=(8, 8), attention_levels=(False, False), norm_num_groups=4,
                                          num_head_channels=8), num_steps=3, batch_size=2, ema_halflife_steps=0)

    def batch(generator: torch.Generator):
        return torch.rand(2, 1, 8, 8, generator=generator), (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()

    meta = {"data_channels": 1, "condition_channels": 1}
    trained = [train_flow_model("test", batch, config, meta, torch.device("cpu"), tmp_path / f"{name}.pt",
                                loss_weight=weight)
               for name, weight in (("plain", None), ("zero", torch.zeros_like))]
    torch.manual_seed(config.seed)
    initial = build_velocity_unet(1, 1, config).state_dict()
    plain, zero = (model.state_dict() for model in trained)
    assert all(torch.equal(zero[key], initial[key]) for key in initial)
    assert not all(torch.equal(plain[key], initial[key]) for key in initial)


def test_a_resumed_run_continues_its_smoothed_loss_curve(tmp_path):
    """Training cut at a checkpoint and resumed reports the same smoothed losses as one uninterrupted run."""
    from AlignFlowLib.config import ImageGeneratorConfig, replace
    from AlignFlowLib.train.flow_matching import train_flow_model

    config = replace(ImageGeneratorConfig(channels=(8, 8), attention_levels=(False, False), norm_num_groups=4,
                                          num_head_channels=8), num_steps=40, batch_size=2, checkpoint_every_steps=20)

    def batch(generator: torch.Generator):
        return torch.rand(2, 1, 8, 8, generator=generator), None

    meta = {"data_channels": 1, "condition_channels": 0}
    cpu = torch.device("cpu")
    whole, cut = tmp_path / "whole.pt", tmp_path / "cut.pt"
    train_flow_model("test", batch, config, meta, cpu, whole)
    train_flow_model("test", batch, replace(config, num_steps=20), meta, cpu, cut)
    train_flow_model("test", batch, config, meta, cpu, cut, resume=True)
    from AlignFlowLib.checkpoint import load_checkpoint

    expected, resumed = load_checkpoint(whole)["history"], load_checkpoint(cut)["history"]
    assert resumed["step"] == expected["step"] == [10, 20, 30, 40]
    assert resumed["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_noise_drawn_on_the_device_is_decided_by_the_stored_cpu_stream():
    """The CUDA path (exercised here with a CPU 'device' generator): one seed from the CPU stream decides the noise,
    so a run resumed from a stored CPU state redraws it; the CPU path draws exactly what torch.randn would."""
    from AlignFlowLib.device import gaussian_noise

    cpu = torch.device("cpu")
    stream = torch.Generator().manual_seed(7)
    state = stream.get_state()
    first = gaussian_noise((2, 3, 4, 4), stream, cpu, torch.Generator())
    after_first = stream.get_state()
    second = gaussian_noise((2, 3, 4, 4), stream, cpu, torch.Generator())
    assert not torch.equal(first, second)  # the stream moves on
    stream.set_state(state)  # resume from the stored state
    assert torch.equal(gaussian_noise((2, 3, 4, 4), stream, cpu, torch.Generator().manual_seed(123)), first)
    assert torch.equal(stream.get_state(), after_first)  # one seed drawn, not the values
    reference = torch.Generator().manual_seed(7)
    torch.randint(2**62, (1,), generator=reference)
    assert torch.equal(reference.get_state(), after_first)

    stream.set_state(state)
    assert torch.equal(gaussian_noise((2, 3, 4, 4), stream, cpu), torch.randn((2, 3, 4, 4),
                                                                              generator=torch.Generator().manual_seed(7)))
