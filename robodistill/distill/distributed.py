"""torch.distributed for multi-process distillation (``torchrun --nproc_per_node N -m robodistill distill ...``).

Each rank steps its own environments with its own seed and keeps its own aggregation buffer; gradients are
averaged across ranks after every backward pass (what DDP does, without wrapping the student, whose training
entry point is ``unroll`` rather than ``forward``); the observation normalizer merges the statistics of every
rank's batch, so all ranks normalize identically (rsl_rl leaves them rank-local). Rank 0 alone evaluates, logs
and writes checkpoints. gloo on CPU, nccl on GPU; several nodes use torchrun's usual rendezvous options.
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns ``(rank, world_size)``."""
    if not launched_by_torchrun():
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        log.info("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_rank(), dist.get_world_size()


def active() -> bool:
    """Whether a multi-process group is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module) -> None:
    """All-reduce and average the gradients of every parameter (one flat buffer, one collective)."""
    if not active():
        return
    params = [p for p in module.parameters() if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def global_moments(x: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Count, mean and (biased) variance of the rows of ``x [N, D]`` over all ranks."""
    x = x.double()
    n = torch.tensor([float(x.shape[0])], dtype=torch.float64, device=x.device)
    s, sq = x.sum(0), (x * x).sum(0)
    if active():
        for t in (n, s, sq):
            dist.all_reduce(t)
    mean = s / n
    return float(n.item()), mean, torch.clamp(sq / n - mean * mean, min=0.0)


def broadcast_float(value: float) -> float:
    """Rank 0's value of a scalar, on every rank."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def in_sync(module: nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters and buffers (the observation normalizer's statistics
    among them); compares a digest."""
    if not active():
        return True
    tensors = [*module.parameters(), *module.buffers()]
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in tensors)).digest()
    local = torch.tensor(list(digest[:8]), dtype=torch.int64)
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def shutdown(wait_for_all: bool = True) -> None:
    """Leave the process group: by default once every rank is here (no rank tears its connections down while
    another still works), at once on a failure (the other ranks' collectives then fail instead of waiting).

    Every path out of a rank must come through here: a process that exits with gloo's process group alive can
    abort in interpreter finalization ("terminate called without an active exception"; pytorch issue 190489).
    """
    if active():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()
