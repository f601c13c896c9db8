"""Lift constant buffer offsets into kernel arguments, so kernels that differ only in
where they start reading compile once.

An unrolled recurrent layer reads `x_proj[:, t]` at step t: the same computation at a
different constant offset. With the smallest constant index of each buffer passed as an
argument, every step's kernel has the same source, and the program builds it once.
"""
from __future__ import annotations

from dataclasses import replace

from graphc.codegen.index import Lin
from graphc.codegen.kernel import Apply, Kernel, Load, Select, walk


def lift_offsets(kernel: Kernel) -> tuple[Kernel, tuple[int, ...]]:
    """The kernel with per-buffer base offsets as arguments, and those offsets' values."""
    bases = _bases(kernel)
    if not bases:
        return kernel, ()
    names = {buffer: f"{buffer}_offset" for buffer in bases}
    memo: dict = {}
    stores = tuple(_shift_store(s, bases, names, memo) for s in kernel.stores)
    reduce = kernel.reduce and replace(kernel.reduce,
                                       body=_shift(kernel.reduce.body, bases, names, memo))
    lifted = replace(kernel, stores=stores, reduce=reduce,
                     offsets=tuple(names[b] for b in bases))
    return lifted, tuple(bases.values())


def _bases(kernel: Kernel) -> dict[str, int]:
    """For each buffer, the smallest constant part of its indices, where it is not zero."""
    lowest: dict[str, int] = {}
    for access in _accesses(kernel):
        const = access.index.const
        lowest[access.buffer] = min(lowest.get(access.buffer, const), const)
    return {b: c for b, c in lowest.items() if c > 0}


def _accesses(kernel: Kernel):
    yield from kernel.stores
    roots = [s.value for s in kernel.stores] + ([kernel.reduce.body] if kernel.reduce else [])
    seen: set = set()
    stack = list(roots)
    while stack:
        expr = stack.pop()
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        if isinstance(expr, Load):
            yield expr
            stack.extend(d[0] for d in expr.dynamic)
        elif isinstance(expr, Apply):
            stack.extend(expr.args)
        elif isinstance(expr, Select):
            stack.extend((expr.a, expr.b))


def _minus(index: Lin, amount: int) -> Lin:
    return Lin(index.terms, index.const - amount)


def _shift_store(store, bases, names, memo):
    value = _shift(store.value, bases, names, memo)
    if store.buffer not in bases:
        return replace(store, value=value)
    return replace(store, value=value, index=_minus(store.index, bases[store.buffer]),
                   offset=names[store.buffer])


def _shift(expr, bases, names, memo):
    """`expr` with the offsets subtracted, children first (no recursion: chains are deep)."""
    for node in walk(expr):
        if node not in memo:
            memo[node] = _shift_node(node, bases, names, memo)
    return memo[expr]


def _shift_node(expr, bases, names, memo):
    """One node rebuilt over its children's shifted versions (in `memo`)."""
    if isinstance(expr, Load):
        dynamic = tuple((memo[e], s, n) for e, s, n in expr.dynamic)
        result = replace(expr, dynamic=dynamic)
        if expr.buffer in bases:
            result = replace(result, index=_minus(expr.index, bases[expr.buffer]),
                             offset=names[expr.buffer])
        return result
    if isinstance(expr, Apply):
        return replace(expr, args=tuple(memo[a] for a in expr.args))
    if isinstance(expr, Select):
        return replace(expr, a=memo[expr.a], b=memo[expr.b])
    return expr
