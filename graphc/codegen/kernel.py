"""The backend-neutral kernel IR: what one kernel computes, before any language is chosen.

A kernel runs one work item per element of `space` (flattened, index `gid`). An optional
`Reduce` loops over a second space and combines a body expression into an accumulator.
`stores` write expressions (which may read the accumulator) to output buffers. Values are
expression DAGs of frozen dataclasses, so equal subexpressions hash equal and are
emitted once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc.codegen.index import Div, Lin, Mod, Var, cached_hash, evaluate


@cached_hash
@dataclass(frozen=True)
class Cond:
    """An index condition: `form op bound` with op one of '>=', '<', '=='."""

    form: Lin
    op: str
    bound: int


@cached_hash
@dataclass(frozen=True)
class Expr:
    """Base of value expressions."""

    dtype: np.dtype


@cached_hash
@dataclass(frozen=True)
class Load(Expr):
    """buffer[index + sum(expr * stride for dynamic)], or 0 where `valid` fails."""

    buffer: str
    index: Lin
    valid: tuple[Cond, ...] = ()
    dynamic: tuple = ()             # ((Expr, stride, extent), ...) data-dependent terms
    offset: str | None = None       # a scalar kernel argument added to the index


@cached_hash
@dataclass(frozen=True)
class Const(Expr):
    """A literal."""

    value: float | int | bool


@cached_hash
@dataclass(frozen=True)
class Apply(Expr):
    """A registry op's template applied to argument expressions."""

    op: str
    args: tuple
    attrs: tuple = ()


@cached_hash
@dataclass(frozen=True)
class Select(Expr):
    """`a` where every condition holds, else `b`."""

    conds: tuple[Cond, ...]
    a: Expr
    b: Expr


@cached_hash
@dataclass(frozen=True)
class IndexValue(Expr):
    """An index used as a value (one_hot, argmax positions)."""

    index: Lin


@cached_hash
@dataclass(frozen=True)
class Acc(Expr):
    """The reduction's (or GEMM's) accumulated value, readable by stores."""


@cached_hash
@dataclass(frozen=True)
class Random(Expr):
    """Element `index` of a Philox stream: dist in uniform|normal|bernoulli."""

    dist: str
    seed: int
    blocks_per_step: int
    index: Lin
    params: tuple[float, float]


@dataclass(frozen=True)
class Reduce:
    """Loop over `space` (flattened into variable `var`), combining `body` with `combiner`."""

    space: tuple[int, ...]
    var: str
    combiner: str                   # sum | max | min | argmax | argmin
    body: Expr
    acc_dtype: np.dtype
    compensated: bool = False       # a float sum in blocks, added up with compensation


@dataclass(frozen=True)
class Store:
    """output[index] = value."""

    buffer: str
    index: Lin
    value: Expr
    offset: str | None = None


@dataclass(frozen=True)
class Param:
    """A kernel argument: a buffer read or written."""

    name: str
    dtype: np.dtype
    output: bool = False


@dataclass(frozen=True)
class Kernel:
    """One kernel: work items over `space`, an optional reduction, and its stores."""

    name: str
    space: tuple[int, ...]
    stores: tuple[Store, ...]
    params: tuple[Param, ...]
    reduce: Reduce | None = None
    uses_step: bool = False
    offsets: tuple[str, ...] = ()       # scalar int arguments, after the buffers
    wide: bool = False                  # 64-bit indices (some index passes 2^31 - 1)
    ops: tuple[str, ...] = field(default=(), compare=False)
    flops: int = field(default=0, compare=False)


def walk(expr: Expr):
    """Every sub-expression of `expr`, children first, each once."""
    seen: set = set()
    order: list = []

    def visit(node):
        if node in seen:
            return
        seen.add(node)
        for child in children(node):
            visit(child)
        order.append(node)
    visit(expr)
    return order


def children(expr: Expr) -> tuple:
    """Direct sub-expressions."""
    if isinstance(expr, Apply):
        return expr.args
    if isinstance(expr, Select):
        return (expr.a, expr.b)
    if isinstance(expr, Load):
        return tuple(d[0] for d in expr.dynamic)
    return ()


def reads_follow_outputs(kernel: Kernel, block: int) -> bool:
    """Whether the reduction loop of `kernel` reads consecutive addresses for consecutive
    outputs (a column sum): every load that moves with `gid` moves by one element for most
    steps within blocks of `block` outputs (the others cross a row of a multi-dimensional
    output), the rest stay put. A row sum's loads jump by the loop length instead. Divisions
    of `gid` (rows of outputs) pay in sums by powers of two only; in max, min and arg
    reductions not at all (measured on PoCL: 6x slower)."""
    total = int(np.prod(kernel.space, dtype=np.int64))
    samples = [g for g in range(min(total - 1, 4 * block)) if g % block != block - 1]
    loads = {n.index for n in walk(kernel.reduce.body) if isinstance(n, Load)}
    moving = False
    for index in loads:
        steps = [evaluate(index, {"gid": g + 1}) - evaluate(index, {"gid": g}) for g in samples]
        if not any(steps):
            continue
        divisors = list(_gid_divisors(index))
        if sum(s == 1 for s in steps) * 8 < len(steps) * 7 or any(d & (d - 1) for d in divisors) \
                or (divisors and kernel.reduce.combiner != "sum"):
            return False
        moving = True
    return moving


def _gid_divisors(form: Lin):
    """The divisors of the divisions and remainders of `gid` in `form`."""
    for atom, _ in form.terms:
        if isinstance(atom, (Div, Mod)) and _mentions_gid(atom.form):
            yield atom.divisor
            yield from _gid_divisors(atom.form)


def _mentions_gid(form: Lin) -> bool:
    return any(atom.name == "gid" if isinstance(atom, Var) else _mentions_gid(atom.form)
               for atom, _ in form.terms)
