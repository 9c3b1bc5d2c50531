"""Data-parallel training of one run over several processes (GPUs, or CPU processes with gloo).

Launch the ordinary command under ``accelerate launch`` (or ``torchrun``)::

    accelerate launch --num_processes 4 -m xpe_bench run --method xpe --budget paper ...

Every process builds the same model from the run seed. Each global batch of the budget (``batch_size``
examples, drawn exactly as in a single process) is split into contiguous shards, one per process; every
process scales its summed loss by the global batch size, and the gradients are summed across processes
(``all_reduce``), so each optimizer step sees the gradient of the whole global batch, as one process
would: the parameters stay identical on every process. Evaluation is computed by every process on the whole
dev split (cheap, and keeps model selection identical everywhere); only the main process writes anything (the
lock, checkpoints, the trained state, predictions, the manifest). Dropout masks are drawn per process, so a
run with dropout is reproducible for a given number of processes but not equal to the single-process run;
without dropout they agree to float summation order (tested with 2 CPU processes).

With a world size of 1 this module does nothing, and :func:`start` removes distributed variables a job may
have inherited (SLURM + accelerate set them), which would otherwise make torch wait for peers. A process that
joined a group leaves it at exit (:func:`_leave`): exiting with the group alive lets gloo's worker threads be
torn down during interpreter finalization, which aborts the process ("terminate called without an active
exception") after the work is done, and the launcher reports the whole job failed.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any

_DISTRIBUTED_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def start() -> None:
    """Join the process group when launched with several processes; otherwise clear inherited variables."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        for name in _DISTRIBUTED_VARIABLES:
            os.environ.pop(name, None)
        return
    from accelerate import PartialState

    PartialState()  # initialises torch.distributed (gloo on CPU, nccl on CUDA) from the launcher's variables
    atexit.register(_leave)


def _leave() -> None:
    """Destroy the process group while the interpreter is still whole (see the module docstring)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def shard(batch: Sequence[int]) -> Sequence[int]:
    """This process's contiguous share of a global batch (shares differ in size by at most one)."""
    rank, size = world()
    if size == 1:
        return batch
    bounds = [len(batch) * k // size for k in range(size + 1)]
    return batch[bounds[rank] : bounds[rank + 1]]


def sum_across(tensors: list[Any]) -> None:
    """Sum tensors in place across processes (gradients; loss sums)."""
    if world()[1] == 1 or not tensors:
        return
    import torch.distributed as dist

    # torch's own collective: accelerate's ``reduce`` is a no-op unless accelerate itself chose the
    # distributed type, which it does not for CPU processes started by torchrun.
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def from_main(values: list[Any]) -> list[Any]:
    """The main process's ``values`` (small, JSON-like), on every process; a no-op in a single process."""
    if world()[1] == 1:
        return values
    import torch.distributed as dist

    dist.broadcast_object_list(values, src=0)
    return values
