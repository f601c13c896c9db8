"""Index width: kernels index with 32-bit `int` where every index fits, with `long` past it.

An index form is rendered as a sum of products evaluated left to right, so it fits when the
sum of its terms' largest magnitudes (and of every division's or remainder's inner form)
stays within int32: then no partial result of the C expression can overflow either. A
kernel is wide when any index it computes, any loop bound, its range of work items or a
gathered (take) position's offset does not fit; it then declares every index variable
`long` and writes its extents as `L` literals (OpenCL's min/max take no mixed int/long).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from graphc.codegen.index import Div, Lin, Mod
from graphc.codegen.kernel import IndexValue, Kernel, Load, Random, Select, walk

INT_MAX = 2**31 - 1


@lru_cache(maxsize=1 << 16)
def magnitude(form: Lin) -> int:
    """An upper bound of |partial result| while C evaluates `form` (inner forms included)."""
    total = abs(form.const)
    for atom, coef in form.terms:
        lo, hi = atom.bounds
        total += abs(coef) * max(abs(lo), abs(hi))
        if isinstance(atom, (Div, Mod)):
            total = max(total, magnitude(atom.form))
    return total


def fits(form: Lin) -> bool:
    """Can `form` be computed in 32-bit int arithmetic?"""
    return not beyond_int(magnitude(form))


def beyond_int(value: int) -> bool:
    """Is `value` (an extent, a size, a range) past what an int holds?"""
    return value > INT_MAX


def index_type(wide: bool) -> str:
    """The C type of indices: int, or long in a wide kernel."""
    return "long" if wide else "int"


def number(value: int, wide: bool) -> str:
    """An index literal: with the `L` suffix in a wide kernel."""
    return f"{value}L" if wide else str(value)


def kernel_is_wide(kernel: Kernel, per_item: int = 1) -> bool:
    """Does any index of `kernel` (computing `per_item` outputs per work item) need 64 bits?"""
    total = int(np.prod(kernel.space, dtype=np.int64))
    if beyond_int(total + per_item):
        return True
    roots = [s.value for s in kernel.stores]
    if kernel.reduce is not None:
        if beyond_int(int(np.prod(kernel.reduce.space, dtype=np.int64))):
            return True
        roots.append(kernel.reduce.body)
    forms = [s.index for s in kernel.stores]
    for root in roots:
        forms += [f for node in walk(root) for f in expr_forms(node)]
    return not all(fits(f) for f in forms) or not all(_dynamic_fits(n) for r in roots
                                                     for n in walk(r))


def exprs_fit(exprs) -> bool:
    """Do all index forms of the expression DAGs `exprs` fit 32-bit arithmetic?"""
    return all(fits(f) and _dynamic_fits(node) for root in exprs for node in walk(root)
               for f in expr_forms(node) or [Lin()])


def expr_forms(node) -> list[Lin]:
    """The index forms one expression node renders."""
    if isinstance(node, Load):
        return [node.index] + [c.form for c in node.valid]
    if isinstance(node, Select):
        return [c.form for c in node.conds]
    if isinstance(node, (IndexValue, Random)):
        return [node.index]
    return []


def _dynamic_fits(node) -> bool:
    """A load's data-dependent terms: the clamped position times its stride, plus the rest."""
    if not isinstance(node, Load) or not node.dynamic:
        return True
    spread = sum((extent - 1) * stride for _, stride, extent in node.dynamic)
    return not beyond_int(magnitude(node.index) + spread)
