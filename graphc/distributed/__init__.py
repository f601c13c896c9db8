"""gc.distributed: data-parallel training on MPI, with Horovod's names and meanings.

    mpirun -n 2 python train.py          # each rank runs the same program

    import graphc as gc
    gc.distributed.init()
    opt = gc.distributed.DistributedOptimizer(gc.optim.SGD(0.1))   # averages gradients
    gc.distributed.broadcast_variables(params, root_rank=0)          # same start everywhere

`allreduce`, `allgather` and `broadcast` on a gc.Tensor are graph ops: a compiled function
runs its kernels up to each, does it through MPI on the host and continues. On numpy arrays
they run at once. Without MPI (no mpi4py, or not started by mpirun) the world is this
process alone: rank 0 of 1, and every collective is the identity.
"""
from __future__ import annotations

import os

import numpy as np

from graphc.builder import apply
from graphc.distributed import collectives
from graphc.distributed.collectives import STATS, collective, reset_stats
from graphc.distributed.devices import rank_device
from graphc.distributed.host import register_all
from graphc.distributed.optimizer import DistributedOptimizer
from graphc.distributed import world as _world
from graphc.distributed.world import DistributedError, World
from graphc.ir import Tensor

__all__ = ["init", "is_initialized", "rank", "size", "local_rank", "local_size", "allreduce",
           "allgather", "broadcast", "broadcast_variables", "DistributedOptimizer",
           "DistributedError", "stats", "reset_stats"]

register_all()


def init() -> World:
    """Join the MPI world (idempotent) and pick this rank's device: the local_rank-th of the
    best kind when a host has several (unless GRAPHC_DEVICE names one)."""
    joined = _world.init()
    if joined.size > 1 and not os.environ.get("GRAPHC_DEVICE", "").strip():
        from graphc.runtime import devices
        found = devices()
        if found:
            os.environ["GRAPHC_DEVICE"] = str(rank_device(found, joined.local_rank).index)
    return joined


def is_initialized() -> bool:
    """Has init() (or a first collective) joined the world?"""
    return _world._WORLD is not None


def rank() -> int:
    """This process's rank in the world (0 without MPI)."""
    return init().rank


def size() -> int:
    """The number of ranks (1 without MPI)."""
    return init().size


def local_rank() -> int:
    """This process's rank among the ranks on its host."""
    return init().local_rank


def local_size() -> int:
    """The number of ranks on this host."""
    return init().local_size


def allreduce(tensor, op: str = "average"):
    """The mean (op="average", Horovod's default) or sum (op="sum") of `tensor` over ranks."""
    init()
    if isinstance(tensor, Tensor):
        return apply("allreduce", [tensor], reduce=op)
    array = np.asarray(tensor)
    if op not in ("sum", "average"):
        raise ValueError(f"allreduce: op must be 'sum' or 'average', got {op!r}")
    if op == "average" and array.dtype.kind != "f":
        array = array.astype(np.float64)
    return collective("allreduce", array, array.shape, reduce=op)


def allgather(tensor):
    """Every rank's `tensor` stacked along axis 0, in rank order."""
    ranks = size()
    if isinstance(tensor, Tensor):
        return apply("allgather", [tensor], ranks=ranks)
    array = np.asarray(tensor)
    if array.ndim == 0:
        raise ValueError("allgather stacks along axis 0: give it an array of 1 or more dims")
    return collective("allgather", array, (array.shape[0] * ranks,) + array.shape[1:],
                      ranks=ranks)


def broadcast(tensor, root_rank: int = 0):
    """`root_rank`'s `tensor`, on every rank."""
    init()
    if isinstance(tensor, Tensor):
        return apply("broadcast", [tensor], root=int(root_rank))
    array = np.asarray(tensor)
    return collective("broadcast", array, array.shape, root=int(root_rank))


def broadcast_variables(variables, root_rank: int = 0) -> None:
    """Give every variable the value it has on `root_rank` (one broadcast per dtype)."""
    here = init()
    variables = list(variables)
    for v in variables:
        if not isinstance(v, Tensor) or v.role != "variable":
            raise DistributedError(f"broadcast_variables takes variables, got {v!r}")
    if here.comm is None:
        collectives._checked_root(int(root_rank), "broadcast_variables")
        return
    by_dtype: dict = {}
    for v in variables:
        by_dtype.setdefault(v.dtype, []).append(v)
    for dtype, group in sorted(by_dtype.items(), key=lambda item: item[0].str):
        packed = np.concatenate([np.ravel(v.get_value()) for v in group]) if group else \
            np.empty(0, dtype)
        shared = collective("broadcast", packed, packed.shape, root=int(root_rank))
        start = 0
        for v in group:
            v.set_value(shared[start:start + v.size].reshape(v.shape))
            start += v.size


def stats() -> dict:
    """Seconds spent in collectives (waiting for peers included), their count and bytes."""
    return {"seconds": STATS.seconds, "calls": STATS.calls, "bytes": STATS.bytes}
