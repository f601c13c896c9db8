"""The MPI world of this process: who we are (rank, size, local rank), and how we stop.

`init()` joins MPI only when the process was started by an MPI launcher (mpirun sets
OMPI_COMM_WORLD_SIZE, Hydra PMI_SIZE, PMIx PMIX_RANK) and mpi4py is installed; otherwise
the world is this process alone (rank 0 of 1), and every collective is the identity.
GRAPHC_MPI=1 joins MPI even without a launcher's variables, GRAPHC_MPI=0 never joins.

graphc's collectives run on a duplicate of MPI_COMM_WORLD, so they never match a user's
own messages. A rank whose Python code raises, when the world has several ranks, prints
its traceback and calls MPI_Abort: mpirun then stops every rank, instead of leaving the
others waiting in a collective for a peer that will never come.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from graphc.errors import GraphcError

LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
TIMEOUT_ENV = "GRAPHC_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT = 300.0     # seconds a rank waits in one collective for the others


class DistributedError(GraphcError, RuntimeError):
    """A collective failed in MPI, or was given what this world cannot do, or the ranks
    built different graphs."""


@dataclass
class World:
    """This process's place among the ranks; `comm` is None for a single process."""

    comm: Any
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def timeout(self) -> float:
        """Seconds a collective may wait for the other ranks (GRAPHC_COLLECTIVE_TIMEOUT)."""
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            return float(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise DistributedError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") \
                from None


_WORLD: World | None = None


def launched_by_mpi() -> bool:
    """Was this process started by an MPI launcher (or told to join MPI)?"""
    forced = os.environ.get("GRAPHC_MPI", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(os.environ.get(name) for name in LAUNCHER_VARIABLES)


def init() -> World:
    """Join the MPI world (once; later calls return the same world)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _mpi_world() if launched_by_mpi() else World(None)
    return _WORLD


def world() -> World:
    """The world, joined on first use."""
    return _WORLD if _WORLD is not None else init()


def _mpi_world() -> World:
    try:
        from mpi4py import MPI
    except ImportError:
        size = next((os.environ[n] for n in LAUNCHER_VARIABLES if os.environ.get(n)), "?")
        if size not in ("1", "?"):
            raise DistributedError(
                f"this process was started by an MPI launcher ({size} ranks) but mpi4py is "
                f"not installed: pip install graphc[distributed]") from None
        return World(None)
    comm = MPI.COMM_WORLD.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)      # MPI failures raise, never abort silently
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    found = World(comm, comm.Get_rank(), comm.Get_size(), local.Get_rank(), local.Get_size())
    local.Free()
    if found.size > 1:
        _install_abort_hook(found)
    return found


def _install_abort_hook(found: World) -> None:
    """An uncaught exception on one rank stops them all (MPI_Abort) after its traceback."""
    previous = sys.excepthook

    def abort_all(kind, error, traceback) -> None:
        previous(kind, error, traceback)
        sys.stderr.write(f"graphc.distributed: rank {found.rank} of {found.size} stopped on "
                         f"{kind.__name__}; aborting every rank (MPI_Abort)\n")
        sys.stderr.flush()
        found.comm.Abort(1)

    sys.excepthook = abort_all
