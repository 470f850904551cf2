"""torch.distributed under torchrun: who this process is, and the few collectives the engine needs.

`torchrun --nproc-per-node N -m speechrecipe run ...` starts N copies of the same command with
RANK, WORLD_SIZE and LOCAL_RANK set. Rank 0 does everything a single process does (the lock,
the records, stages 0, 1 and 4, checkpoints, logs); every rank evaluates its share of stage 3
(engine/pairs.py) and trains, each on its own shard of the batches, with gradients averaged by
DistributedDataParallel. Without torchrun every
function here is a no-op for a world of one. Imports torch only when a group is started.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

# A stage on rank 0 (preparing VoxCeleb, evaluating) can take hours while the others wait.
WAIT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the torchrun job (rank 0 of 1 without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) once; a no-op for a world of one."""
    import torch.distributed as dist

    if not world().distributed or dist.is_initialized():
        return
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(world().local_rank)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=WAIT)


def stop() -> None:
    """Leave the process group after a run that ended well on every rank.

    The barrier lets no rank tear its end down while another still talks to it, and collecting
    garbage first frees the DDP reducer that holds the group: gloo threads still alive when the
    interpreter exits abort it ("terminate called without an active exception").
    """
    if _active():
        import gc

        import torch.distributed as dist

        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def exit_after_failure(code: int) -> None:
    """After a failure the group is not left (another rank may be blocked in a collective, and a
    barrier would hang): exit at once, skipping the interpreter teardown that would crash in gloo's
    threads. torchrun then ends the other ranks. A no-op when no group is up."""
    if _active():
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's `value`, on every rank."""
    if not _active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any] | None:
    """Every rank's `value`, in rank order, on rank 0 (None elsewhere)."""
    if not _active():
        return [value]
    import torch.distributed as dist

    out = [None] * world().size if world().main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not _active():
        return [value]
    import torch.distributed as dist

    out = [None] * world().size
    dist.all_gather_object(out, value)
    return out


def maxima(values: list[int], device: Any = None) -> list[int]:
    """Element-wise maxima over ranks (flags, signal numbers): one all-reduce for several answers."""
    if not _active():
        return values
    import torch
    import torch.distributed as dist

    if device is None:  # nccl reduces GPU tensors only
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    box = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return [int(v) for v in box.tolist()]


def total(values: list[float], device: Any = "cpu") -> list[float]:
    """Element-wise sums over ranks."""
    if not _active():
        return values
    import torch
    import torch.distributed as dist

    box = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(box)
    return box.tolist()


def _active() -> bool:
    if not world().distributed:
        return False
    import torch.distributed as dist

    return dist.is_initialized()
