"""Checks run on every rank under `mpirun -n 2` by tests/test_distributed.py (one launch, so
MPI starts once): each writes this rank's results to OUT/<check>.<rank>.npz, which the test
compares across ranks and against one process training on the global batch.

    mpirun -n 2 python tests/mpi_checks.py OUT [CHECK ...]
    python tests/mpi_checks.py OUT --reference      # one process, global batches
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np

import graphc as gc

BATCH = 8               # per rank
STEPS = 4
FEATURES, CLASSES = 6, 3


def data(ranks: int = 2):
    """Examples for `ranks` ranks at BATCH each (STEPS batches), the same on every rank."""
    rng = np.random.default_rng(7)
    n = BATCH * ranks * STEPS
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    return x, y


def initial_weights(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((FEATURES, 16)).astype(np.float32) * 0.5,
            rng.standard_normal(16).astype(np.float32) * 0.1,
            rng.standard_normal((16, CLASSES)).astype(np.float32) * 0.5,
            rng.standard_normal(CLASSES).astype(np.float32) * 0.1]


# ---- a Theano-style step: gradients allreduced by hand ----

def theano_step(x_all, y_all, rank: int, size: int, distributed: bool) -> dict:
    """STEPS steps of momentum SGD on a 2-layer net; rank r takes rows r, r + size, ... of
    each global batch. Returns the final weights and the losses."""
    params = [gc.variable(w, name=f"w{i}") for i, w in enumerate(initial_weights(1))]
    velocity = [gc.variable(np.zeros_like(w), name=f"v{i}") for i, w in
                enumerate(initial_weights(1))]
    rows = BATCH if distributed else BATCH * size
    x = gc.placeholder((rows, FEATURES), name="x")
    y = gc.placeholder((rows,), gc.int32, name="y")
    hidden = gc.tanh(x @ params[0] + params[1])
    logits = hidden @ params[2] + params[3]
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = gc.grad(loss, params)
    if distributed:
        grads = [gc.distributed.allreduce(g) for g in grads]
        loss = gc.distributed.allreduce(loss)
    updates = []
    for p, v, g in zip(params, velocity, grads):
        new_v = 0.9 * v - 0.2 * g
        updates += [(v, new_v), (p, p + new_v)]
    step = gc.function([x, y], loss, updates=updates, name="theano_step")
    losses = []
    global_batch = BATCH * size
    for k in range(STEPS):
        xb, yb = x_all[k * global_batch:(k + 1) * global_batch], \
            y_all[k * global_batch:(k + 1) * global_batch]
        if distributed:
            xb, yb = xb[rank::size], yb[rank::size]
        losses.append(float(step(xb, yb)))
    results = {f"w{i}": p.get_value() for i, p in enumerate(params)}
    results["losses"] = np.array(losses)
    if distributed:
        results["buckets"] = np.array(len(step.compiled.plan.host_calls))
    return results


# ---- Keras: fit with DistributedOptimizer ----

def keras_fit(x_all, y_all, rank: int, size: int, distributed: bool) -> dict:
    """Two epochs of fit with Adam; under MPI rank 1 starts from other weights (fit
    broadcasts rank 0's). One process trains at batch size * BATCH on the same examples."""
    np.random.seed(3 if rank == 0 or not distributed else 4)
    model = gc.nn.Sequential([gc.nn.Input((FEATURES,)), gc.nn.Dense(16, activation="relu"),
                              gc.nn.Dense(CLASSES)])
    optimizer = gc.optim.Adam(0.01)
    if distributed:
        optimizer = gc.distributed.DistributedOptimizer(optimizer)
    model.compile(optimizer, gc.nn.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x_all, y_all, batch_size=BATCH if distributed else BATCH * size,
                        epochs=2, shuffle=False, verbose=0)
    results = {f"w{i}": w.get_value() for i, w in enumerate(model.weights)}
    results["loss"] = np.array(history.history["loss"])
    results["accuracy"] = np.array(history.history["accuracy"])
    return results


def checkpoint(x_all, y_all, rank: int, size: int, out: Path) -> dict:
    """fit with ModelCheckpoint callbacks whose files are named by rank (rank 0 alone must
    write them), and where this rank lies among the ranks of its host."""
    gc.random.set_seed(5)
    model = gc.nn.Sequential([gc.nn.Input((FEATURES,)), gc.nn.Dense(CLASSES)])
    model.compile(gc.distributed.DistributedOptimizer(gc.optim.SGD(0.1)),
                  gc.nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    saves = [gc.nn.callbacks.ModelCheckpoint(str(out / f"model-rank{rank}-{{epoch}}.npz")),
             gc.nn.callbacks.ModelCheckpoint(str(out / f"weights-rank{rank}.npz"),
                                             save_weights_only=True)]
    model.fit(x_all, y_all, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=saves)
    results = {f"w{i}": w.get_value() for i, w in enumerate(model.weights)}
    launcher = {k: int(os.environ.get(f"OMPI_COMM_WORLD_{k.upper()}", -1))
                for k in ("local_rank", "local_size")}
    return {**results, "local_rank": np.array(gc.distributed.local_rank()),
            "local_size": np.array(gc.distributed.local_size()),
            "launcher_local_rank": np.array(launcher["local_rank"]),
            "launcher_local_size": np.array(launcher["local_size"]),
            "host": np.array(socket.gethostname())}


# ---- collectives and the distributed API ----

def broadcast_variables(rank: int, size: int) -> dict:
    """Variables made differently on each rank, then broadcast from rank 1."""
    a = gc.variable(np.full((3, 2), rank, np.float32), name="a")
    b = gc.variable(np.arange(4, dtype=np.int32) * (rank + 1), name="b")
    before = a.get_value().copy()
    gc.distributed.broadcast_variables([a, b], root_rank=1)
    return {"before": before, "a": a.get_value(), "b": b.get_value()}


def collectives(rank: int, size: int) -> dict:
    """Each collective op compiled, against what it must give, and against the
    interpreter (whose reference runs the same MPI collective)."""
    x = gc.placeholder((2, 3), name="x")
    value = np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * rank
    outputs = [gc.distributed.allreduce(x, op="sum"), gc.distributed.allreduce(x * 2),
               gc.distributed.allgather(x), gc.distributed.broadcast(x + 1, root_rank=1)]
    cost = gc.sum(outputs[2] * gc.constant(np.arange(12 * size // 2, dtype=np.float32)
                                           .reshape(2 * size, 3)))
    outputs.append(gc.grad(cost, x))            # allgather's gradient: reduce-scatter
    outputs.append(gc.grad(gc.sum(outputs[3] * outputs[3]), x))   # broadcast's
    fn = gc.function([x], outputs, name="collectives")
    got = fn(value)
    want = gc.interpret(outputs, {x: value})
    return {**{f"got{i}": g for i, g in enumerate(got)},
            **{f"interpreted{i}": w for i, w in enumerate(want)},
            "eager_sum": gc.distributed.allreduce(np.array([rank + 1.0]), op="sum"),
            "eager_gather": gc.distributed.allgather(np.array([rank])),
            "size": np.array(gc.distributed.size()), "rank": np.array(gc.distributed.rank())}


def different_graphs(rank: int, size: int) -> dict:
    """Rank 1 builds another graph: the first collective must say so on every rank."""
    x = gc.placeholder((4,) if rank == 0 else (5,), name="x")
    fn = gc.function([x], gc.distributed.allreduce(x * 2.0), name="mismatched")
    try:
        fn(np.ones(x.shape, np.float32))
    except gc.distributed.DistributedError as error:
        return {"message": np.array(str(error))}
    return {"message": np.array("")}


CHECKS = {"theano": None, "keras": None, "checkpoint": None,
          "broadcast_variables": broadcast_variables, "collectives": collectives,
          "different_graphs": different_graphs}


def run(out: Path, names: list[str]) -> None:
    gc.distributed.init()
    rank, size = gc.distributed.rank(), gc.distributed.size()
    x, y = data(size)
    for name in names:
        if name == "theano":
            gc.distributed.reset_stats()
            results = theano_step(x, y, rank, size, distributed=True)
            results["mpi_calls"] = np.array(gc.distributed.stats()["calls"])
        elif name == "keras":
            results = keras_fit(x, y, rank, size, distributed=True)
        elif name == "checkpoint":
            (out / "saved").mkdir(exist_ok=True)
            results = checkpoint(x, y, rank, size, out / "saved")
        else:
            results = CHECKS[name](rank, size)
        np.savez(out / f"{name}.{rank}.npz", **results)
        print(f"rank {rank}: {name} done", flush=True)


def reference(out: Path) -> None:
    """One process, global batches (the ranks' union), written as <check>.reference.npz."""
    x, y = data(2)
    np.savez(out / "theano.reference.npz", **theano_step(x, y, 0, 2, distributed=False))
    np.savez(out / "keras.reference.npz", **keras_fit(x, y, 0, 2, distributed=False))


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    if sys.argv[2:] == ["--reference"]:
        reference(folder)
    else:
        run(folder, sys.argv[2:] or list(CHECKS))
