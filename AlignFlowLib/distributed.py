"""Data parallelism under `torchrun`: every rank draws the same global batch from the config's seed and trains on its
own rows of it, so N ranks take the step one process would take on the whole batch.

That choice makes a run independent of the number of processes (up to the order of floating-point sums): the
config's `batch_size` is the global batch, a checkpoint written by a 2-rank run resumes on 1 rank or 4, and nothing
needs per-rank seeds (each rank's rows are disjoint by construction; the checkpoint records the world size). Drawing
a whole batch of indices, noise and augmentation on every rank costs little next to the network's forward/backward.

Losses that are not means over samples are made global explicitly: the alignment reward's MMD gathers features from
all ranks with gradients (`gather_rows`), and the segmenter's soft Dice sums its terms over all ranks
(`sum_over_ranks`). Only rank 0 writes (`atomic.atomic_write` asks `atomic.writes_files()`), and ranks meet at
`barrier()` after each file that another rank reads next.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UsageError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.size, "backend": self.backend or None,
                "batch": "every rank draws the global batch from the config's seed and trains on rows "
                         "[rank·B/N, (rank+1)·B/N)"}


def world() -> World:
    """This process's place in the process group (rank 0 of 1 when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())


def is_main() -> bool:
    return world().is_main


def init_from_environment(device: torch.device, timeout_s: float = 7200) -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, …): NCCL for CUDA, gloo for CPU.
    Returns this rank's device (cuda:LOCAL_RANK on GPUs). The long timeout covers rank 0 alone writing synthetic
    pairs or scoring while the others wait at a barrier."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise UsageError("this torch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices; lower "
                             "--nproc-per-node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"--device {device.type}: torchrun runs on cuda (NCCL) or cpu (gloo)")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def local_rows(batch_size: int) -> slice:
    """The rows of a global batch of `batch_size` that this rank trains on."""
    w = world()
    if batch_size % w.size:
        raise UsageError(f"batch size {batch_size} does not divide among {w.size} processes; choose a multiple of "
                         f"{w.size}")
    share = batch_size // w.size
    return slice(w.rank * share, (w.rank + 1) * share)


def shard(*tensors: torch.Tensor | None):
    """This rank's rows of each global-batch tensor (None stays None)."""
    rows = None
    out = []
    for tensor in tensors:
        if tensor is None:
            out.append(None)
            continue
        rows = rows or local_rows(len(tensor))
        out.append(tensor[rows])
    return out[0] if len(out) == 1 else tuple(out)


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' rows concatenated in rank order, differentiable: the backward pass sums every rank's gradient for
    these rows (each rank computes the same global loss), which DDP's averaging then divides by N again."""
    if world().size == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated for a private replacement; still the public autograd gather
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(tensor.contiguous()))


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over ranks, differentiable (for global statistics such as a soft Dice over the batch)."""
    if world().size == 1:
        return tensor
    return gather_rows(tensor.unsqueeze(0)).sum(0)


def broadcast_from_main(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of `tensor` on every rank (in place), so decisions made from it agree."""
    if world().size > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` under DistributedDataParallel when distributed (gradients averaged over ranks), else itself.

    On CUDA, batch norm layers become SyncBatchNorm (statistics of the global batch), in place, so the caller's model
    keeps its weights and names. PyTorch has no SyncBatchNorm on CPU: there a batch-norm network (the default `unet`
    segmenter) normalises with each rank's rows, and 2-rank CPU training is then close to, not equal to, one process;
    networks with group or instance norm (the generators, `segresnet`) are equal.
    """
    if world().size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        _sync_batch_norm_in_place(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _sync_batch_norm_in_place(model: torch.nn.Module) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(model, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            _sync_batch_norm_in_place(child)
