"""Device and precision choice, made once at the boundary and passed down as arguments."""

from __future__ import annotations

import contextlib

import torch

from .errors import AlignFlowError


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit name is checked for availability."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise AlignFlowError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AlignFlowError(f"device {name!r} requested but CUDA is not available")
    return device


_CPU_BF16 = False


def cpu_bf16_supported() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 / AMX); elsewhere CPU bf16 is slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_cpu_bf16(enabled: bool) -> bool:
    """Opt in to bf16 autocast on CPU (used by the CPU benchmark preset, where it halves a generator step on a
    bf16-capable CPU); ignored where the CPU lacks native bf16. Returns whether it is now on."""
    global _CPU_BF16
    _CPU_BF16 = bool(enabled) and cpu_bf16_supported()
    return _CPU_BF16


def autocast(device: torch.device, cuda_bf16: bool = True):
    """bf16 autocast on CUDA (unless `cuda_bf16` is False), and on CPU when opted in with `set_cpu_bf16`; full
    precision otherwise.

    Measured on an H200 (bench/results/gpu_precision-cuda.json): bf16 makes the image generator's training step
    1.18x and the sampler 1.09x faster than fp32 and leaves the mask generator even. The segmenter's step, as its
    loop runs it (channels-last, BCE + Dice), took 8.1 ms in fp32 and 9.3 ms in bf16, so it trains in fp32 on CUDA.
    """
    if device.type == "cuda" and cuda_bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and _CPU_BF16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_COMPILE_BACKEND: str | None = None


def set_compile(enabled: bool, backend: str = "inductor") -> bool:
    """Opt in to `torch.compile` of the image generator's training step and the samplers, for this process (the
    CLI's `--compile`). The segmenter stays eager: in its loop it measured 0.85-0.90x compiled (bench/results/
    compile_loops-cuda.json); so does the mask generator's loop (no measurable gain, `train_mask_generator`).
    Alignment stays eager too (its sampler is checkpointed and truncated).

    Off by default everywhere: every process compiles again when it starts (25-75 s per network on an H200 with a
    cold compiler cache), so it pays off only in long runs. `backend` is torch's compiler backend; the tests use
    "aot_eager", which traces the same graphs without generating kernels. Returns whether it is now on."""
    global _COMPILE_BACKEND
    _COMPILE_BACKEND = backend if enabled else None
    return _COMPILE_BACKEND is not None


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """`module` compiled when `set_compile` is on, else itself. The compiled wrapper shares the parameters but its
    state dict has prefixed keys, so callers keep saving and returning the original module."""
    if _COMPILE_BACKEND is None:
        return module
    # Static shapes: a sampler's shorter last batch gets its own graph instead of turning every later call dynamic.
    return torch.compile(module, backend=_COMPILE_BACKEND, dynamic=False)


def process_settings() -> dict[str, object]:
    """The process-wide precision and compile choices, to hand to worker processes (`apply_process_settings`)."""
    return {"cpu_bf16": _CPU_BF16, "compile_backend": _COMPILE_BACKEND}


def apply_process_settings(settings: dict[str, object]) -> None:
    set_cpu_bf16(bool(settings.get("cpu_bf16")))
    backend = settings.get("compile_backend")
    set_compile(backend is not None, str(backend or "inductor"))


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                   device_generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of `shape` on `device`, decided by the CPU stream `generator` (the one checkpoints store).

    Without `device_generator` the values come from `generator` itself (CPU runs draw exactly as before). With one,
    `generator` draws a single seed and `device_generator` draws the values where they are used: on an H200, drawing
    a stage-1 batch of noise on the host took ~9.5 ms of each compiled step (bench/profile_step.py), most of the
    loop's overhead over a bare step. Either way a resumed run redraws the same noise from the stored CPU state.
    """
    if device_generator is None:
        return to_device(torch.randn(shape, generator=generator), device)
    device_generator.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    return torch.randn(shape, generator=device_generator, device=device_generator.device)


def device_resident(tensor: torch.Tensor, device: torch.device, share: float = 0.25) -> torch.Tensor:
    """A training set copied to a CUDA `device` once, when it takes at most `share` of the free memory there; the
    tensor itself otherwise (and always on a CPU). Why: gathering each batch on the host and copying it over took
    about 15-25 ms of every stage-1 step on an H200 (bench/profile_step.py: `aten::index` and `aten::copy_` on the
    host), the loop's whole overhead over a bare step. Index the result with indices on its own device."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor
    free_bytes, _ = torch.cuda.mem_get_info(device)
    if tensor.numel() * tensor.element_size() > share * free_bytes:
        return tensor
    return to_device(tensor, device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to `device`. On CUDA through pinned memory without blocking: a pageable copy makes the host
    wait until the GPU has finished all queued work, so the next batch could not be prepared while the GPU computes."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
