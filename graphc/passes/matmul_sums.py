"""Sums of matrix products become one product: a1 @ b1 + a2 @ b2 + ... = [a1 a2 ...] @ [b1; b2; ...].

Backpropagation through an unrolled recurrence sums one weight gradient per step (for
U in h @ U: sum over t of h[t-1].T @ dz[t]); done as written that is a GEMM per step. One
GEMM over the concatenated operands does the same arithmetic in a single, larger (faster)
kernel. When every left operand is a transpose, the concatenation is of the untransposed
values, so the product keeps reading it as a transposed operand instead of copying it.
"""
from __future__ import annotations

from graphc.builder import apply
from graphc.ir import Graph, Node, Tensor
from graphc.passes import Pass
from graphc.passes.reduction_sums import merged_reduction
from graphc.passes.stacked_products import step_of, time_major
from graphc.rewrite import rebuild
from graphc.sites import site_of

MIN_TERMS = 3           # two products are not worth two concatenations


def merge_matmul_sums(graph: Graph) -> Graph:
    """Replace each maximal add-tree of >= MIN_TERMS 2-D matmuls by one matmul, and one
    of reductions by one reduction (passes/reduction_sums.py)."""
    users = graph.users()
    stacked = _stacked(graph)
    position = {t: i for i, n in enumerate(graph.nodes) for t in n.outputs}

    def replace(node: Node, inputs):
        if node.op != "add" or _inner(node.outputs[0], users):
            return None
        leaves = _leaves(node.outputs[0], inputs, users)
        if leaves is None or len(leaves) < MIN_TERMS:
            return None
        with site_of(node.site):
            if all(_is_matmul(leaf) for leaf in leaves):
                terms = [leaf.producer for leaf in leaves]
                return [_one_product(_in_stack_order(terms, stacked, position))]
            return merged_reduction(leaves, users, MIN_TERMS)
    return rebuild(graph, replace)


def _stacked(graph: Graph) -> dict[Tensor, tuple[int, int]]:
    """Each value stacked by a row concatenation: (which concatenation, position in it);
    the last one wins (a sum of padded rows leaves a chain of growing concatenations)."""
    found: dict[Tensor, tuple[int, int]] = {}
    for number, node in enumerate(graph.nodes):
        if node.op == "concatenate" and node.attrs["axis"] == 0:
            for position, value in enumerate(node.inputs):
                found[value] = (number, position)
    return found


def _in_stack_order(terms: list[Node], stacked: dict, position: dict) -> list[Node]:
    """The terms ordered as their right operands lie in one existing row concatenation
    (the sum is the same in any order; this one lets the memory plan place the new
    concatenation of those operands inside the existing one instead of copying them).
    Without one, in the order their left operands were computed: two sums over the same
    steps (an unrolled recurrence's input and recurrent weight gradients, each step's
    h[t-1].T @ dz[t] and x[t].T @ dz[t]) then stack the shared right operands alike, so
    one concatenation is a run of rows of the other, and neither is a copy."""
    places = [stacked.get(n.inputs[1]) for n in terms]
    if None in places or len({p[0] for p in places}) != 1:
        return _in_step_order(terms, position)
    return [n for _, n in sorted(zip(places, terms), key=lambda pair: pair[0][1])]


def _in_step_order(terms: list[Node], position: dict) -> list[Node]:
    """The terms ordered by step: by where their left operands start in the one value they
    are slices of (x[:, t] of an input), else by where the graph computes them (h[t-1]);
    unchanged when neither orders them all."""
    lefts = [_untransposed(n.inputs[0]) for n in terms]
    slices = [_slice_of(left) for left in lefts]
    if None not in slices and len({id(source) for source, _ in slices}) == 1:
        keys = [starts for _, starts in slices]
    else:
        keys = [position.get(left) for left in lefts]
        if None in keys:
            return terms
    if len(set(keys)) != len(keys):
        return terms
    return [n for _, n in sorted(zip(keys, terms), key=lambda pair: pair[0])]


def _slice_of(t: Tensor):
    """(the sliced value, the slice's starts) of a slice, reshaped or not; else None."""
    if t.producer is not None and t.producer.op == "reshape":
        t = t.producer.inputs[0]
    if t.producer is None or t.producer.op != "slice":
        return None
    return t.producer.inputs[0], tuple(t.producer.attrs["starts"])


def _every_step(values: list[Tensor]) -> Tensor | None:
    """time_major(x, axis) when `values` are x's steps along `axis`, every one, in order
    (the stacked products' operand: no copy of the steps, and CSE shares it)."""
    found = [step_of(v) for v in values]
    if None in found or len({(id(x), axis) for x, axis, _ in found}) != 1:
        return None
    source, axis, _ = found[0]
    if [index for _, _, index in found] != list(range(source.shape[axis])):
        return None
    return time_major(source, axis)


def _untransposed(t: Tensor) -> Tensor:
    """The value under a 2-D transpose (`t` itself when it is none)."""
    return t.producer.inputs[0] if _is_transpose(t) else t


def _inner(t: Tensor, users) -> bool:
    """Is `t` part of a larger add-tree (its only reader an add of the same shape)?"""
    readers = users.get(t, [])
    return len(readers) == 1 and readers[0].op == "add" and readers[0].outputs[0].shape == t.shape


def _leaves(root: Tensor, inputs, users) -> list[Tensor] | None:
    """The values summed by the add-tree under `root`, each read only by the tree."""
    leaves, stack = [], list(inputs)
    while stack:
        value = stack.pop()
        if value.producer is None or value.shape != root.shape \
                or len(users.get(value, [])) != 1:
            return None
        if value.producer.op == "add":
            stack.extend(value.producer.inputs)
        else:
            leaves.append(value)
    return leaves[::-1]


def _is_matmul(t: Tensor) -> bool:
    return t.producer.op == "matmul" and all(i.ndim == 2 for i in t.producer.inputs)


def _one_product(terms: list[Node]) -> Tensor:
    lefts = [n.inputs[0] for n in terms]
    rights = [n.inputs[1] for n in terms]
    if all(_is_transpose(a) for a in lefts):
        untransposed = [a.producer.inputs[0] for a in lefts]
        stacked = _every_step(untransposed)
        if stacked is None:
            stacked = apply("concatenate", untransposed, axis=0)
        left = apply("transpose", [stacked], perm=(1, 0))
    else:
        left = apply("concatenate", lefts, axis=1)
    return apply("matmul", [left, apply("concatenate", rights, axis=0)])


def _is_transpose(t: Tensor) -> bool:
    return t.producer is not None and t.producer.op == "transpose" \
        and tuple(t.producer.attrs["perm"]) == (1, 0)


merge_matmuls = Pass("matmul_sums", merge_matmul_sums)
