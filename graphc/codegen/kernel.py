"""The backend-neutral kernel IR: what one kernel computes, before any language is chosen.

A kernel runs one work item per element of `space` (flattened, index `gid`). An optional
`Reduce` loops over a second space and combines a body expression into an accumulator.
`stores` write expressions (which may read the accumulator) to output buffers. Values are
expression DAGs of frozen dataclasses, so equal subexpressions hash equal and are
emitted once. A fused chain makes DAGs tens of thousands deep, so their hashing, equality
and walks keep their own stacks (see `expression`) instead of Python's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from graphc.codegen.index import Div, Lin, Mod, Var, cached_hash, evaluate


def expression(cls):
    """Give an expression class a remembered hash and an equality that walk the DAG with an
    explicit stack (the dataclass versions recurse once per level)."""
    cls.__hash__ = _expression_hash
    cls.__eq__ = _expression_eq
    return cls


def _expression_hash(self) -> int:
    try:
        return self.__dict__["_hash"]
    except KeyError:
        _fill_hashes(self)
        return self.__dict__["_hash"]


def _fill_hashes(root) -> None:
    """Hash every not yet hashed sub-expression of `root`, children before parents."""
    stack = [root]
    while stack:
        node = stack[-1]
        if "_hash" in node.__dict__:
            stack.pop()
            continue
        kids = children(node)
        missing = [c for c in kids if "_hash" not in c.__dict__]
        if missing:
            stack.extend(missing)
            continue
        stack.pop()
        value = hash((type(node).__name__, _fields_of(node),
                      tuple(c.__dict__["_hash"] for c in kids)))
        object.__setattr__(node, "_hash", value)


def _expression_eq(self, other) -> bool:
    if self is other:
        return True
    if type(self) is not type(other):
        return NotImplemented
    pending, compared = [(self, other)], set()
    while pending:
        a, b = pending.pop()
        if a is b or (id(a), id(b)) in compared:
            continue
        compared.add((id(a), id(b)))
        kids_a, kids_b = children(a), children(b)
        if type(a) is not type(b) or hash(a) != hash(b) or len(kids_a) != len(kids_b) \
                or _fields_of(a) != _fields_of(b):
            return False
        pending.extend(zip(kids_a, kids_b))
    return True


def _fields_of(expr) -> tuple:
    """The fields of `expr` that are not sub-expressions (`children` gives those)."""
    if isinstance(expr, Apply):
        return expr.dtype, expr.op, expr.attrs
    if isinstance(expr, Select):
        return expr.dtype, expr.conds
    if isinstance(expr, Load):
        return (expr.dtype, expr.buffer, expr.index, expr.valid,
                tuple(d[1:] for d in expr.dynamic), expr.offset)
    if isinstance(expr, Const):
        return expr.dtype, expr.value
    return tuple(getattr(expr, f.name) for f in fields(expr))


@cached_hash
@dataclass(frozen=True)
class Cond:
    """An index condition: `form op bound` with op one of '>=', '<', '=='."""

    form: Lin
    op: str
    bound: int


@expression
@dataclass(frozen=True)
class Expr:
    """Base of value expressions."""

    dtype: np.dtype

    def __post_init__(self):
        _fill_hashes(self)      # hashed as built, children first: no walk later


@expression
@dataclass(frozen=True)
class Load(Expr):
    """buffer[index + sum(expr * stride for dynamic)], or 0 where `valid` fails."""

    buffer: str
    index: Lin
    valid: tuple[Cond, ...] = ()
    dynamic: tuple = ()             # ((Expr, stride, extent), ...) data-dependent terms
    offset: str | None = None       # a scalar kernel argument added to the index


@expression
@dataclass(frozen=True)
class Const(Expr):
    """A literal."""

    value: float | int | bool


@expression
@dataclass(frozen=True)
class Apply(Expr):
    """A registry op's template applied to argument expressions."""

    op: str
    args: tuple
    attrs: tuple = ()


@expression
@dataclass(frozen=True)
class Select(Expr):
    """`a` where every condition holds, else `b`."""

    conds: tuple[Cond, ...]
    a: Expr
    b: Expr


@expression
@dataclass(frozen=True)
class IndexValue(Expr):
    """An index used as a value (one_hot, argmax positions)."""

    index: Lin


@expression
@dataclass(frozen=True)
class Acc(Expr):
    """The reduction's (or GEMM's) accumulated value, readable by stores."""


@expression
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


def walk(expr: Expr) -> list:
    """Every sub-expression of `expr`, children first, each once (an explicit stack: a
    fused chain can be deeper than Python's recursion limit)."""
    seen: set = {expr}
    order: list = []
    stack = [(expr, iter(children(expr)))]
    while stack:
        node, pending = stack[-1]
        for child in pending:
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(children(child))))
                break
        else:
            stack.pop()
            order.append(node)
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
