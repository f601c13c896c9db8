"""Sums of reductions become one reduction: sum_i reduce_sum(d_i, a) = reduce_sum([d_1; d_2; ...], a).

Backpropagation through an unrolled recurrence sums one bias gradient per step (GRU's
recurrent bias: the batch sum of each step's gate gradient, padded into the bias's row);
done as written that is a reduction kernel per step. One reduction over the stacked steps
(which the memory plan stacks without copies, passes/views.py) does it in one kernel. The
zero pads and reshapes wrapped around each term are linear, so they move outside the sum.
Part of the matmul_sums pass, which finds the add-trees.
"""
from __future__ import annotations

from graphc.builder import apply
from graphc.ir import Tensor

WRAPPERS = ("pad", "reshape")


def merged_reduction(leaves: list[Tensor], users, min_terms: int) -> Tensor | None:
    """The sum of `leaves` with each group of at least `min_terms` of them that are the
    same zero pads and reshapes around a reduce_sum of inputs of one shape done as one
    reduction; None when there is no such group."""
    groups: dict = {}
    for leaf in leaves:
        found = _unwrap(leaf, users)
        groups.setdefault(found and found[0], []).append((leaf, found and found[1]))
    merged, rest = [], []
    for signature, members in groups.items():
        if signature and len(members) >= min_terms:
            merged.append(_one_reduction(signature, [value for _, value in members]))
        else:
            rest += [leaf for leaf, _ in members]
    if not merged:
        return None
    total = merged[0]
    for value in merged[1:] + rest:
        total = apply("add", [total, value])
    return total


def _one_reduction(signature, values: list[Tensor]) -> Tensor:
    wrappers, (axes, keepdims) = signature[:2]
    stacked = apply("concatenate", values, axis=axes[0])
    result = apply("reduce_sum", [stacked], axes=axes, keepdims=keepdims)
    for op, attrs in reversed(wrappers):
        result = apply(op, [result], **dict(attrs))
    return result


def _unwrap(leaf: Tensor, users):
    """((wrappers from the outside in, (axes, keepdims), input shape, dtype), the reduced
    input), or None when `leaf` is not such a wrapped reduction."""
    wrappers, value = [], leaf
    while value.producer is not None and value.producer.op in WRAPPERS:
        node = value.producer
        if node.op == "pad" and node.attrs["value"] != 0:
            return None
        wrappers.append((node.op, _frozen(node.attrs)))
        value = node.inputs[0]
        if len(users.get(value, [])) != 1:
            return None
    node = value.producer
    if node is None or node.op != "reduce_sum" or not node.attrs["axes"]:
        return None
    d = node.inputs[0]
    reduction = (tuple(node.attrs["axes"]), bool(node.attrs["keepdims"]))
    return (tuple(wrappers), reduction, d.shape, d.dtype), d


def _frozen(attrs: dict) -> tuple:
    return tuple(sorted((k, _hashable(v)) for k, v in attrs.items()))


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
