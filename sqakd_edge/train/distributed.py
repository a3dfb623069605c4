"""Process-group setup for ``torchrun``: DDP on NCCL (CUDA) or gloo (CPU), or a single process."""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment; a plain run gets one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


FAILED_RANK_WAIT_S = 20


def finish_distributed(info: DistInfo, *, completed: bool) -> None:
    """Leave the process group after a barrier, so no rank exits while another still talks to it.

    A rank that failed waits at most ``FAILED_RANK_WAIT_S`` for the others (gloo's monitored barrier): when
    every rank fails the same way (a bad flag), each has said so before any exits, since torchrun stops the
    other ranks once one has exited; when only this one failed, the others are not coming.
    """
    if not info.enabled or not dist.is_initialized():
        return
    if completed:
        dist.barrier()
    elif dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=FAILED_RANK_WAIT_S), wait_all_ranks=True)
        except RuntimeError:
            pass  # some rank is still training or already gone: leave anyway
    gc.collect()  # DDP's reducer and finished work objects, before the group they belong to goes
    dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a list of numbers over all processes (identity for one process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, quantizer state) to every process.

    DDP broadcasts buffers at the start of each forward, so after the last training step each process
    still holds the running statistics of its own last batch. Evaluating the unwrapped model then mixes
    slightly different models; this makes every process evaluate rank 0's, the one that is saved.
    """
    if not info.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for one process); a collective call."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def device_for(info: DistInfo) -> torch.device:
    """CUDA (this process's GPU) when present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")
