"""A training loop in which rank 1 fails at step 2, for tests/test_distributed.py:

    mpirun -n 2 python tests/mpi_faults.py raise   # rank 1 raises (uncaught)
    mpirun -n 2 python tests/mpi_faults.py die     # rank 1's process is killed (SIGKILL)
    mpirun -n 2 python tests/mpi_faults.py hang    # rank 1 stops taking part (sleeps)

Rank 0 keeps stepping: it must stop with a clear error, not wait forever.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import graphc as gc


def main(mode: str) -> None:
    gc.distributed.init()
    rank = gc.distributed.rank()
    w = gc.variable(np.ones(4, np.float32), name="w")
    x = gc.placeholder((4,), name="x")
    loss = gc.sum(w * x)
    step = gc.function([x], loss, updates=[(w, w - 0.1 * gc.distributed.allreduce(
        gc.grad(loss, w)))], name="faulty_step")
    for i in range(100):
        if rank == 1 and i == 2:
            print(f"rank 1: failing ({mode}) at step {i}", flush=True)
            if mode == "raise":
                raise RuntimeError("rank 1 broke on purpose")
            if mode == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "hang":
                time.sleep(600)
        step(np.full(4, i, np.float32))
        print(f"rank {rank}: step {i}", flush=True)
    print(f"rank {rank}: finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
