"""DistributedOptimizer: Horovod's wrapper, averaging the gradients over the ranks.

The wrapped optimizer is an instance of a subclass of the optimizer's own class, with the
same name and state (its variables are shared, not copied), so saving, get_config and
isinstance checks see the optimizer the user made. Only `apply_gradients` changes: each
gradient goes through an allreduce before the optimizer's rule, so every rank applies the
same update. The compiler fuses those allreduces into a few buckets (passes/buckets.py).
An average is a sum times 1/size in the graph: the product fuses into the update kernels
instead of costing the host a pass over the bucket. In a world of one rank nothing is
added to the graph.
"""
from __future__ import annotations

import numpy as np

from graphc.builder import apply
from graphc.optim.base import Optimizer

_CLASSES: dict[type, type] = {}


class _Averaging:
    """Mixed in before the optimizer's class: allreduce the gradients, then apply them."""

    distributed = True
    allreduce_op = "average"

    def apply_gradients(self, grads_and_params):
        """The optimizer's update pairs for gradients averaged (or summed) over the ranks."""
        from graphc.distributed import size
        pairs = list(grads_and_params)
        if size() > 1:
            pairs = [(self._reduced(g, size()), p) for g, p in pairs]
        return super().apply_gradients(pairs)

    def _reduced(self, grad, ranks: int):
        total = apply("allreduce", [grad], reduce="sum")
        if self.allreduce_op == "sum":
            return total
        return total * np.asarray(1.0 / ranks, grad.dtype)


def DistributedOptimizer(optimizer: Optimizer, op: str = "average") -> Optimizer:
    """`optimizer`, averaging (op="average") or summing (op="sum") gradients over ranks."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"DistributedOptimizer wraps a gc.optim optimizer, got {optimizer!r}")
    if op not in ("average", "sum"):
        raise ValueError(f"DistributedOptimizer: op must be 'average' or 'sum', got {op!r}")
    if getattr(optimizer, "distributed", False):
        return optimizer
    base = type(optimizer)
    if base not in _CLASSES:
        _CLASSES[base] = type(base.__name__, (_Averaging, base),
                              {"__module__": base.__module__,
                               "__doc__": f"{base.__name__}, averaging gradients over ranks."})
    wrapped = object.__new__(_CLASSES[base])
    wrapped.__dict__.update(optimizer.__dict__)
    wrapped.allreduce_op = op
    return wrapped
