"""Multi-process training on PyTorch's own engine: torch.distributed, DistributedDataParallel, torchrun.

gankit splits each *global* batch across the ranks. Every rank draws the same epoch order and the same latent
batch (shared seeds) and keeps its own slice, and DDP averages the gradients, so N processes compute what one
process computes with the same global batch. Checkpoints therefore do not depend on the world size, and a run
resumes with any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from gankit.errors import ConfigError

TIMEOUT = timedelta(minutes=5)
"""How long a collective waits for a rank before failing: a dead rank brings the others down, not a hang."""


def check_processes(batch_size: int, sync_batchnorm: bool, *, processes: int, device: torch.device) -> None:
    """What a run of ``processes`` processes needs: a global batch that splits evenly over them, and CUDA for
    synchronised BatchNorm. Checked by the ``--nproc`` launcher before anything starts, and by each process."""
    if batch_size % processes:
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch and must divide evenly over {processes} processes"
        )
    if sync_batchnorm and processes > 1 and device.type != "cuda":
        raise ConfigError("--sync-batchnorm needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; ``world_size == 1`` means no torch.distributed at all."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main rank writes files and shows progress."""
        return self.rank == 0

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch (its size must divide evenly)."""
        if not self.enabled:
            return batch
        size = len(batch) // self.world_size
        return batch[self.rank * size : (self.rank + 1) * size]

    def mean(self, values: Tensor) -> Tensor:
        """The element-wise mean over ranks (a no-op on one process)."""
        if not self.enabled:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is True on any: so all ranks stop at the same step."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather_floats(self, value: float, device: torch.device) -> list[float]:
        """One float from every rank, in rank order (for checks that the ranks agree)."""
        if not self.enabled:
            return [value]
        values = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(self.world_size)]
        dist.all_gather(values, torch.tensor([value], dtype=torch.float64, device=device))
        return [float(v.item()) for v in values]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_ranks() -> Ranks:
    """The ranks torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if not ranks.enabled or dist.is_initialized():
        return device
    if device.type == "cuda":
        if torch.cuda.device_count() <= ranks.local_rank:
            raise ConfigError(
                f"rank {ranks.rank} needs GPU {ranks.local_rank} but only {torch.cuda.device_count()} are visible; "
                "use as many processes per node as GPUs"
            )
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return device


def stop(ranks: Ranks) -> None:
    if ranks.enabled and dist.is_initialized():
        dist.destroy_process_group()
