"""`--compile`: the image generator's training loop and the samplers run through torch.compile and give what eager
mode gives; the segmenter's and mask generator's loops stay eager.

The tests compile with the "aot_eager" backend: it traces the same graphs as inductor (so every graph break, guard
and wrapper problem shows) without generating C++/Triton kernels, which take minutes on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch

from AlignFlowLib.config import ImageGeneratorConfig, SamplerConfig, SegmenterConfig, replace
from AlignFlowLib.device import process_settings, set_compile

CPU = torch.device("cpu")


@pytest.fixture
def dynamo():
    """Compile for the test's duration, counting the graphs dynamo makes; off afterwards whatever happens."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    set_compile(True, backend="aot_eager")
    try:
        yield counters
    finally:
        set_compile(False)
        torch._dynamo.reset()


def _tiny_generator_config() -> ImageGeneratorConfig:
    return replace(ImageGeneratorConfig(channels=(8, 16), attention_levels=(False, True), norm_num_groups=4,
                                        num_head_channels=8), num_steps=4, batch_size=4, checkpoint_every_steps=2)


def _train_generator(path):
    from AlignFlowLib.train.flow_matching import train_flow_model

    def batch(generator: torch.Generator):
        x1 = torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1
        return x1, (x1[:, :1] > 0).float()

    return train_flow_model("image_generator", batch, _tiny_generator_config(),
                            {"data_channels": 3, "condition_channels": 1}, CPU, path)


def _compiled_graphs(counters) -> int:
    return int(counters["stats"]["unique_graphs"])


def test_compiled_generator_training_matches_eager_and_saves_plain_keys(tmp_path, dynamo):
    from AlignFlowLib.checkpoint import load_checkpoint

    set_compile(False)
    eager = _train_generator(tmp_path / "eager.pt")
    set_compile(True, backend="aot_eager")
    compiled = _train_generator(tmp_path / "compiled.pt")

    assert _compiled_graphs(dynamo) > 0, "the loop did not go through torch.compile"
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    state = load_checkpoint(tmp_path / "compiled.pt")
    assert state["step"] == 4
    assert not [key for key in state["model"] if "_orig_mod" in key]   # loadable without torch.compile


def test_the_segmenter_stays_eager_under_compile(dynamo):
    """Its loop measured slower compiled on an H200 (bench/results/compile_loops-cuda.json), so `--compile` skips it."""
    from AlignFlowLib.segmenter.train import train_segmenter

    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(8, 1, 32, 32, generator=g) > 0.7).float()
    images = (masks - 0.5 + 0.1 * torch.randn(8, 1, 32, 32, generator=g)).clamp(-1, 1)
    train_segmenter(images, masks, SegmenterConfig(architecture="unet", num_steps=2, batch_size=4, seed=0), CPU)
    assert _compiled_graphs(dynamo) == 0


def test_the_mask_generator_trains_eager_under_compile_unless_asked(tmp_path, dynamo):
    """Its compiled loop showed no steady gain on an H200 (README, `--compile` in the loops), so `--compile` skips it;
    bench/compile_loops.py still compiles it on request."""
    from AlignFlowLib.config import MaskGeneratorConfig
    from AlignFlowLib.data.folders import PairSet
    from AlignFlowLib.train.generators import train_mask_generator

    masks = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    pairs = PairSet(images=masks.repeat(1, 3, 1, 1) * 2 - 1, masks=masks, names=[str(i) for i in range(8)])
    config = replace(MaskGeneratorConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=4,
                                         num_head_channels=8),
                     num_steps=2, batch_size=4, checkpoint_every_steps=2)
    train_mask_generator(pairs, config, CPU, tmp_path / "eager.pt")
    assert _compiled_graphs(dynamo) == 0
    train_mask_generator(pairs, config, CPU, tmp_path / "compiled.pt", compile_loop=True)
    assert _compiled_graphs(dynamo) > 0


def test_compile_uses_static_shapes(monkeypatch):
    """A sampler's shorter last batch must get its own graph, not turn every later call into a dynamic one."""
    from AlignFlowLib.device import compiled

    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **options: calls.append(options) or module)
    set_compile(True, backend="aot_eager")
    try:
        compiled(torch.nn.Linear(2, 2))
    finally:
        set_compile(False)
    assert calls == [{"backend": "aot_eager", "dynamic": False}]


def test_compiled_sampling_matches_eager_with_guidance(dynamo):
    from AlignFlowLib.models.velocity import build_velocity_unet
    from AlignFlowLib.synthesis import generate_images

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_velocity_unet(3, 1, _tiny_generator_config())
    masks = (torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    sampler = SamplerConfig(num_steps=3, guidance_scale=2.0)

    set_compile(False)
    eager = generate_images(model, masks, list(range(5)), sampler, CPU, batch_size=4)
    set_compile(True, backend="aot_eager")
    compiled = generate_images(model, masks, list(range(5)), sampler, CPU, batch_size=4)

    graphs = _compiled_graphs(dynamo)
    assert graphs > 0
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    # A second synthesis with the same batch shapes (a full batch of 4 and a last one of 1) compiles nothing new.
    generate_images(model, masks, list(range(5, 10)), sampler, CPU, batch_size=4)
    assert _compiled_graphs(dynamo) == graphs
    # Alignment's evaluation samples from a model still in training: never compiled.
    generate_images(model, masks[:3], [0, 1, 2], sampler, CPU, batch_size=3, compile_model=False)
    assert _compiled_graphs(dynamo) == graphs


def test_worker_processes_get_the_parents_compile_and_bf16_choice():
    """Benchmark workers are spawned fresh (nothing inherited); they must compile exactly when the parent does."""
    from AlignFlowLib.bench.workers import WorkerPool
    from AlignFlowLib.data.folders import PairSet

    tiny = PairSet(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), ["x"])
    set_compile(True, backend="aot_eager")
    try:
        pool = WorkerPool(1, CPU, tiny, tiny, None)
        try:
            in_worker = pool.call(process_settings).result(timeout=120)
        finally:
            pool.close()
    finally:
        set_compile(False)
    assert in_worker == {"cpu_bf16": False, "compile_backend": "aot_eager"}
    assert process_settings()["compile_backend"] is None


def test_cli_compile_flag_is_accepted_by_every_command():
    from AlignFlowLib.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--source", "s", "--out", "o", "--compile"]).compile is True
    assert parser.parse_args(["bench", "polyp", "--compile"]).compile is True
    assert parser.parse_args(["train", "--source", "s", "--out", "o"]).compile is False
