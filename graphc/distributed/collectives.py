"""Collectives on numpy arrays, through MPI: what a compiled function's host steps and the
reference interpreter both run (one definition of what each collective computes).

Each `*_into(x, out, **attrs)` fills `out`. A single-process world copies: the result of
one rank alone. Every MPI call runs under a deadline (GRAPHC_COLLECTIVE_TIMEOUT,
distributed/watchdog.py): a peer that died, hangs or runs another program stops the job
instead of leaving this rank waiting forever. MPI has no float16, so float16 reductions go
through float32 on the host; gathers and broadcasts move raw bytes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graphc.distributed.watchdog import WATCHDOG
from graphc.distributed.world import DistributedError, World, world


@dataclass
class Stats:
    """Time spent in collectives (waiting for the other ranks included), calls and bytes."""

    seconds: float = 0.0
    calls: int = 0
    bytes: int = 0


STATS = Stats()


def reset_stats() -> None:
    """Zero the collective counters."""
    STATS.seconds, STATS.calls, STATS.bytes = 0.0, 0, 0


# ---- one MPI call, under the watchdog ----

def call_mpi(run, x: np.ndarray, what: str) -> None:
    """run(comm) under the deadline; MPI's errors as DistributedError; counted in STATS."""
    here = world()
    started = time.perf_counter()
    try:
        with WATCHDOG.watching(what, here):
            run(here.comm)
    except Exception as err:            # mpi4py's MPI.Exception, with the MPI error text
        raise DistributedError(f"rank {here.rank} of {here.size}: {what} failed in MPI: "
                               f"{err}") from err
    STATS.seconds += time.perf_counter() - started
    STATS.calls += 1
    STATS.bytes += x.nbytes


def _raw(array: np.ndarray):
    """An MPI buffer of the array's bytes."""
    from mpi4py import MPI
    return [array.reshape(-1).view(np.uint8), MPI.BYTE]


def _summable(array: np.ndarray) -> np.ndarray:
    """The array in a dtype MPI can add (float16 through float32)."""
    return array.astype(np.float32) if array.dtype == np.float16 else \
        np.ascontiguousarray(array)


def _flat(array: np.ndarray) -> np.ndarray:
    """A 1-d view of a contiguous array (0-d arrays included), for MPI's typed buffers."""
    return array.reshape(-1)


# ---- the collectives ----

def allreduce_into(x: np.ndarray, out: np.ndarray, reduce: str = "average",
                   what: str = "") -> None:
    """out = the sum, or the mean, of x over the ranks."""
    here = world()
    if here.comm is None:
        out[...] = x
        return
    from mpi4py import MPI
    source = _summable(x)
    target = out if out.dtype == source.dtype else np.empty_like(source)
    send = MPI.IN_PLACE if np.shares_memory(source, target) else _flat(source)
    call_mpi(lambda comm: comm.Allreduce(send, _flat(target), op=MPI.SUM), x,
             what or f"allreduce of {x.dtype.name}{list(x.shape)}")
    if reduce == "average":
        np.divide(target, here.size, out=target, casting="unsafe")
    if target is not out:
        out[...] = target


def allreduce_pieces_into(pieces: list[np.ndarray], out: np.ndarray,
                          reduce: str = "average", what: str = "") -> None:
    """out = the allreduce of the pieces' elements back to back (a bucket): the pieces are
    copied into out and reduced there, in place, in one call (one call of the packed bucket
    beat one call per large piece without the copy: 0.86 against 1.08 ms for the MLP's 2.5
    MB over shared memory)."""
    packed = out if all(p.dtype == out.dtype for p in pieces) else \
        np.empty(out.shape, pieces[0].dtype)
    flat, start = packed.reshape(-1), 0
    for piece in pieces:
        flat[start:start + piece.size] = piece.reshape(-1)
        start += piece.size
    allreduce_into(packed, out, reduce, what)


def allgather_into(x: np.ndarray, out: np.ndarray, ranks: int = 1, what: str = "") -> None:
    """out = every rank's x, stacked along axis 0 in rank order."""
    here = _checked_ranks(ranks, "allgather")
    if here.comm is None:
        out[...] = x
        return
    source = np.ascontiguousarray(x)
    call_mpi(lambda comm: comm.Allgather(_raw(source), _raw(out)), x,
             what or f"allgather of {x.dtype.name}{list(x.shape)}")


def broadcast_into(x: np.ndarray, out: np.ndarray, root: int = 0, what: str = "") -> None:
    """out = root's x on every rank."""
    here = _checked_root(root, "broadcast")
    if here.rank == root or here.comm is None:
        out[...] = x
    if here.comm is not None:
        call_mpi(lambda comm: comm.Bcast(_raw(out), root=root), x,
                 what or f"broadcast of {x.dtype.name}{list(x.shape)} from rank {root}")


def allgather_grad_into(g: np.ndarray, out: np.ndarray, ranks: int = 1,
                        what: str = "") -> None:
    """The gradient of allgather: this rank's block of the sum of every rank's g
    (MPI_Reduce_scatter_block)."""
    here = _checked_ranks(ranks, "allgather_grad")
    if here.comm is None:
        out[...] = g
        return
    from mpi4py import MPI
    source = _summable(g)
    target = out if out.dtype == source.dtype else np.empty(out.shape, source.dtype)
    call_mpi(lambda comm: comm.Reduce_scatter_block(_flat(source), _flat(target), op=MPI.SUM),
             g, what or f"reduce-scatter of {g.dtype.name}{list(g.shape)}")
    if target is not out:
        out[...] = target


def broadcast_grad_into(g: np.ndarray, out: np.ndarray, root: int = 0, what: str = "") -> None:
    """The gradient of broadcast: the sum of every rank's g on root, zeros elsewhere."""
    here = _checked_root(root, "broadcast_grad")
    if here.comm is None:
        out[...] = g
        return
    from mpi4py import MPI
    source = _summable(g)
    target = np.empty_like(source)
    call_mpi(lambda comm: comm.Reduce(_flat(source), _flat(target), op=MPI.SUM, root=root), g,
             what or f"reduce of {g.dtype.name}{list(g.shape)} to rank {root}")
    out[...] = target if here.rank == root else 0


def _checked_ranks(ranks: int, op: str) -> World:
    here = world()
    if ranks != here.size:
        raise DistributedError(f"{op}: the graph was built for {ranks} ranks, but this world"
                               f" has {here.size}: build the graph after gc.distributed.init()"
                               f" in the process that runs it")
    return here


def _checked_root(root: int, op: str) -> World:
    here = world()
    if not 0 <= root < here.size:
        raise DistributedError(f"{op}: root rank {root} is outside this world of "
                               f"{here.size} rank(s)")
    return here


INTO = {"allreduce": allreduce_into, "allgather": allgather_into,
        "broadcast": broadcast_into, "allgather_grad": allgather_grad_into,
        "broadcast_grad": broadcast_grad_into}


def collective(op: str, x: np.ndarray, shape: tuple, **attrs) -> np.ndarray:
    """The collective `op` of x as a new array of `shape` (the interpreter's reference)."""
    out = np.empty(shape, x.dtype)
    INTO[op](np.ascontiguousarray(x), out, **attrs)
    return out
