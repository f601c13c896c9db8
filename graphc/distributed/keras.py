"""Model.fit on several ranks (what Horovod's Keras callbacks do, built into fit).

Under mpirun, fit: refuses an optimizer that does not average gradients (the ranks' weights
would drift apart); gives each rank every size-th example (rank r takes examples r, r +
size, ..., of a length cut to a multiple of size, so that every rank runs the same number
of steps, each of the same size: a step on `size` ranks at batch B is then the step of one
process at batch size * B over the same examples); broadcasts the weights and the
optimizer's state from rank 0 before training; sums each epoch's counts (loss and metric
numerators and denominators) over the ranks, so every rank logs the same averages and
callbacks such as EarlyStopping decide alike; and prints and saves (ModelCheckpoint) on
rank 0 only. A data loader or generator is each rank's own: it must yield that rank's
shard, the same number of batches on every rank.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphc.distributed.world import DistributedError


def ranks_of_fit():
    """(rank, size) when fit runs on several ranks, else None."""
    from graphc.distributed import init
    here = init()
    return (here.rank, here.size) if here.size > 1 else None


def check_optimizer(model) -> None:
    """Several ranks need an optimizer that averages gradients."""
    if not getattr(model.optimizer, "distributed", False):
        from graphc.distributed import size
        raise DistributedError(
            f"fit on {size()} ranks with optimizer {type(model.optimizer).__name__}, which "
            f"does not average gradients over the ranks: their weights would drift apart. "
            f"Compile with gc.distributed.DistributedOptimizer(optimizer)")


def rank_zero_only(verbose: int, callbacks, rank: int):
    """verbose and callbacks of this rank: other ranks print nothing and save nothing."""
    if rank == 0:
        return verbose, callbacks
    from graphc.nn.callbacks import ModelCheckpoint
    return 0, [c for c in (callbacks or []) if not isinstance(c, ModelCheckpoint)]


def shard(data, rank: int, size: int, cut: bool = True):
    """Every size-th example from `rank` of an array, or of each array in a list, tuple or
    dict (None stays None); with `cut`, of a length cut down to a multiple of size."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: shard(v, rank, size, cut) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(shard(v, rank, size, cut) for v in data)
    array = np.asarray(data)
    end = len(array) - len(array) % size if cut else len(array)
    return array[:end][rank::size]


def examples_in(data) -> int | None:
    """The number of examples of array data (None for a loader)."""
    if isinstance(data, dict):
        data = next(iter(data.values()), None)
    if isinstance(data, (list, tuple)):
        data = data[0] if data else None
    return len(data) if hasattr(data, "__len__") and hasattr(data, "shape") else None


def shard_training(x, y, weights, rank: int, size: int):
    """This rank's share of the training arrays (a loader is passed through as is)."""
    n = examples_in(x)
    if n is None:
        return x, y, weights
    if n < size:
        raise DistributedError(f"fit on {size} ranks needs at least {size} examples, got {n}")
    if n % size and rank == 0:
        warnings.warn(f"fit on {size} ranks: the last {n % size} of {n} examples are left "
                      f"out, so that every rank trains on as many", stacklevel=4)
    return shard(x, rank, size), shard(y, rank, size), shard(weights, rank, size)


def shard_validation(validation_data, rank: int, size: int):
    """This rank's share of (x, y[, sample_weight]) validation arrays; the counts are summed
    over the ranks, so the shares need not be equal."""
    if not isinstance(validation_data, (tuple, list)) or \
            (examples_in(validation_data[0]) or 0) < size:
        return validation_data
    return type(validation_data)(shard(v, rank, size, cut=False) for v in validation_data)


def broadcast_state(model) -> None:
    """Rank 0's weights and optimizer variables on every rank."""
    from graphc.distributed import broadcast_variables
    variables = list(model.weights) + list(model.optimizer.variables)
    broadcast_variables(variables, root_rank=0)


def summed_over_ranks(totals):
    """The epoch's counts summed over the ranks (a copy; a single process: as is)."""
    from graphc.distributed import allreduce, size
    if size() == 1 or totals.sums is None:
        return totals
    summed = type(totals)(totals.metrics)
    lengths = [np.size(s) for s in totals.sums]
    flat = np.concatenate([np.ravel(np.asarray(s, np.float64)) for s in totals.sums])
    total = allreduce(flat, op="sum")
    summed.sums, start = [], 0
    for s, n in zip(totals.sums, lengths):
        summed.sums.append(total[start:start + n].reshape(np.shape(s)))
        start += n
    return summed
