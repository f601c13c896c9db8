"""The op suite run on OpenCL devices: one table of small graphs, each compiled with
gc.function and compared with gc.interpret on the same feeds.

Shared by test_device_ops.py (the default device), test_oclgrind.py (the same suite under
the Oclgrind simulator's memory and race checks) and test_rusticl.py (Mesa's rusticl, a
second OpenCL implementation); the last two run test_device_ops.py in a subprocess with
GRAPHC_DEVICE set. With GRAPHC_TEST_TINY=1 the odd sizes are capped (Oclgrind interprets
every work item).

A case builds its graph with the public API from a `GraphBuilder`, which makes placeholders
together with their feeds. `ops` names the registry ops the case must compile (checked
against the optimized graph, so a case cannot silently lose its op to a rewrite); the union
over the table must cover gc.REGISTRY.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import graphc as gc

TINY = os.environ.get("GRAPHC_TEST_TINY", "") not in ("", "0")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
I32, I64, BOOL = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)
FLOATS = (F16, F32, F64)
INTS = (I32, I64)
NUMERIC = FLOATS + INTS
ALL = NUMERIC + (BOOL,)

# (rtol, atol) per dtype: a few ulps of each format, above the order-of-summation noise
TOLERANCE = {F16: (1e-2, 1e-2), F32: (1e-5, 1e-5), F64: (1e-12, 1e-12)}
ODD_SIZES = (1, 7, 13, 127, 1001)


def size(n: int) -> int:
    """An odd size, capped in tiny mode."""
    return min(n, 13) if TINY else n


class GraphBuilder:
    """Placeholders with their feeds, for one case at one dtype on one device."""

    def __init__(self, dtype: np.dtype, supported: tuple[np.dtype, ...], seed: int):
        self.dtype = dtype
        self.supported = supported
        self.rng = np.random.default_rng(seed)
        self.feeds: dict = {}

    def input(self, shape, dtype=None, low=-2.0, high=2.0, discrete=False, values=None):
        """A placeholder fed uniform values in [low, high] (integers when `discrete`)."""
        dtype = np.dtype(dtype or self.dtype)
        p = gc.placeholder(tuple(shape), dtype, name=f"in{len(self.feeds)}")
        self.feeds[p] = self._values(shape, dtype, low, high, discrete) if values is None \
            else np.asarray(values, dtype).reshape(shape)
        return p

    def _values(self, shape, dtype, low, high, discrete):
        if dtype == BOOL:
            return self.rng.random(shape) < 0.5
        if dtype.kind in "iu" or discrete:
            return self.rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1,
                                     shape).astype(dtype)
        return self.rng.uniform(low, high, shape).astype(dtype)


@dataclass(frozen=True)
class Case:
    """One graph of the suite, run at each of `dtypes` the device supports."""

    name: str
    ops: frozenset
    dtypes: tuple
    build: Callable                 # (GraphBuilder) -> list of output tensors
    tol: float = 1.0                # multiplies TOLERANCE
    exact: bool = False             # float outputs must match bit for bit
    calls: int = 1                  # call the function this many times (steps 0, 1, ...)

    def ids(self):
        return [f"{self.name}-{np.dtype(d).name}" for d in self.dtypes]


CASES: list[Case] = []


def add_case(name, ops, dtypes, build, **kw) -> None:
    """Add a case to the table."""
    CASES.append(Case(name, frozenset(ops), tuple(np.dtype(d) for d in dtypes), build, **kw))


def case(name, ops, dtypes=(F32,), **kw):
    """Decorator form of add_case."""
    def register(build):
        add_case(name, ops, dtypes, build, **kw)
        return build
    return register


# ---- elementwise ops, each at every dtype it accepts ----

UNARY = {   # op: (dtypes, low, high, discrete)
    "exp": (FLOATS, -3, 3, False), "log": (FLOATS, 0.1, 4, False),
    "sqrt": (FLOATS, 0, 4, False), "tanh": (FLOATS, -4, 4, False),
    "sigmoid": (FLOATS, -8, 8, False), "sin": (FLOATS, -4, 4, False),
    "cos": (FLOATS, -4, 4, False), "erf": (FLOATS, -3, 3, False),
    "negative": (NUMERIC, -5, 5, False),
    "abs": (NUMERIC, -3, 3, True), "sign": (NUMERIC, -2, 2, True),
    "relu": (NUMERIC, -3, 3, True), "square": (NUMERIC, -5, 5, False),
    "logical_not": ((BOOL,), 0, 1, False),
}


def _unary(op, low, high, discrete):
    def build(g):
        fn = getattr(gc, op)
        x = g.input((7, 13), low=low, high=high, discrete=discrete)
        s = g.input((), low=low, high=high, discrete=discrete)
        one = g.input((1,), low=low, high=high, discrete=discrete)
        return [fn(x), fn(s), fn(one)]
    return build


for _op, (_dtypes, _low, _high, _discrete) in UNARY.items():
    add_case(_op, {_op}, _dtypes, _unary(_op, _low, _high, _discrete))


BINARY = {  # op: (dtypes, domain of a, domain of b, discrete, python scalar)
    "add": (NUMERIC, (-3, 3), (-3, 3), False, 2),
    "subtract": (NUMERIC, (-3, 3), (-3, 3), False, 2),
    "multiply": (NUMERIC, (-3, 3), (-3, 3), False, 3),
    "maximum": (NUMERIC, (-2, 2), (-2, 2), True, 1),
    "minimum": (NUMERIC, (-2, 2), (-2, 2), True, 1),
    "divide": (FLOATS, (-3, 3), (0.5, 2), False, 4),
    "power": (FLOATS, (0.1, 3), (-2, 2), False, 2),
    "logical_and": ((BOOL,), (0, 1), (0, 1), False, True),
    "logical_or": ((BOOL,), (0, 1), (0, 1), False, False),
}
for _op in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
    BINARY[_op] = (ALL, (-2, 2), (-2, 2), True, 1)


def _binary(op, a_dom, b_dom, discrete, scalar):
    def build(g):
        fn = getattr(gc, op)
        a = g.input((7, 13), low=a_dom[0], high=a_dom[1], discrete=discrete)
        row = g.input((13,), low=b_dom[0], high=b_dom[1], discrete=discrete)
        col = g.input((7, 1), low=b_dom[0], high=b_dom[1], discrete=discrete)
        s = g.input((), low=b_dom[0], high=b_dom[1], discrete=discrete)
        literal = bool(scalar) if g.dtype == BOOL else scalar
        return [fn(a, row), fn(col, a), fn(a, s), fn(s, s), fn(a, literal), fn(literal, row)]
    return build


for _op, (_dtypes, _a, _b, _discrete, _scalar) in BINARY.items():
    add_case(_op, {_op}, _dtypes, _binary(_op, _a, _b, _discrete, _scalar))


@case("where", {"where"}, ALL)
def _where(g):
    cond = g.input((7, 13), BOOL)
    a = g.input((13,), discrete=True)
    b = g.input((7, 1), discrete=True)
    s = g.input(())
    return [gc.where(cond, a, b), gc.where(g.input((7, 1), BOOL), s, a), gc.where(cond, a, s)]


@case("clip", {"clip"}, NUMERIC)
def _clip(g):
    x = g.input((7, 13), low=-3, high=3)
    lo = g.input((13,), low=-1, high=0)
    hi = g.input((), low=0.5, high=1.5) if g.dtype.kind == "f" else g.input((), low=1, high=2)
    return [gc.clip(x, lo, hi), gc.clip(x, -1, 2)]


@case("cast", {"cast"}, ALL)
def _cast(g):
    x = g.input((7, 13), low=-40, high=40)
    zeros = g.input((5,), values=np.array([0, 1, -2, 0, 3]).astype(g.dtype))
    targets = [d for d in ALL if d in g.supported and d != g.dtype]
    return [gc.cast(x, d) for d in targets] + [gc.cast(zeros, d) for d in targets]


# ---- reductions ----

def _reduction(fn, discrete):
    def build(g):
        x = g.input((5, 7, 3), low=-3, high=3, discrete=discrete)
        s = gc.where(g.input((), BOOL), g.input(()), g.input(()))   # a computed 0-d value
        return [fn(x), fn(x, axis=1), fn(x, axis=(0, 2)), fn(x, axis=-1, keepdims=True),
                fn(x, axis=(0, 1, 2), keepdims=True), fn(s), fn(g.input(()))]
    return build


add_case("reduce_sum", {"reduce_sum"}, NUMERIC, _reduction(gc.sum, False), tol=4)
add_case("reduce_sum-bool", {"reduce_sum", "cast"}, (BOOL,), _reduction(gc.sum, False))
add_case("reduce_max", {"reduce_max"}, ALL, _reduction(gc.max, True))
add_case("reduce_min", {"reduce_min"}, ALL, _reduction(gc.min, True))


def _arg_reduction(fn):
    def build(g):
        x = g.input((5, 7, 3), low=-2, high=2, discrete=True)     # ties: the first index wins
        return [fn(x), fn(x, axis=0), fn(x, axis=1), fn(x, axis=2, keepdims=True),
                fn(x, axis=None, keepdims=True), fn(g.input((13,)))]
    return build


add_case("argmax", {"argmax"}, ALL, _arg_reduction(gc.argmax))
add_case("argmin", {"argmin"}, ALL, _arg_reduction(gc.argmin))


@case("nan-reductions", {"reduce_max", "reduce_min", "argmax", "argmin", "max_pool2d"}, FLOATS)
def _nan_reductions(g):
    """A NaN wins a max or min, and arg reductions give the first NaN, as in numpy."""
    values = g.rng.uniform(-2, 2, (4, 2, 4, 4))
    values[0, 0, 1, 1] = values[1, :, 2, 3] = values[2, 1, :, 0] = np.nan
    x = g.input(values.shape, values=values)
    return [gc.max(x, axis=(2, 3)), gc.min(x, axis=2), gc.argmax(x, axis=3), gc.argmin(x, axis=2),
            gc.max_pool2d(x, 2), gc.max(x), gc.argmin(x)]


@case("mean", {"reduce_sum", "divide"}, FLOATS)
def _mean(g):
    x = g.input((6, 5))
    return [gc.mean(x), gc.mean(x, axis=0), x.mean(axis=1, keepdims=True)]


# ---- movement ops (index maps), every dtype ----

@case("reshape", {"reshape"}, ALL)
def _reshape(g):
    x = g.input((6, 35))
    return [x.reshape((35, 6)), x.reshape((2, 3, 5, 7)), gc.reshape(x, (-1,))]


@case("transpose", {"transpose"}, ALL)
def _transpose(g):
    x = g.input((2, 3, 5, 7))
    return [gc.transpose(x, (2, 0, 3, 1)), x.T, gc.transpose(g.input((13, 7)))]


@case("broadcast_to", {"broadcast_to"}, ALL)
def _broadcast_to(g):
    return [gc.broadcast_to(g.input((7, 1)), (3, 7, 13)), gc.broadcast_to(g.input(()), (5,)),
            gc.broadcast_to(g.input((1, 13)), (7, 13))]


@case("slice", {"slice"}, ALL)
def _slice(g):
    x = g.input((7, 13))
    return [x[1:6, 2:11:3], x[::-1, ::-2], x[3], x[:, -1], x[None, 2:, ::4], x[5:2:-1, 1:2]]


@case("pad", {"pad"}, ALL)
def _pad(g):
    x = g.input((5, 7))
    value = True if g.dtype == BOOL else 3
    return [gc.pad(x, ((1, 2), (0, 3))), gc.pad(x, 2, constant_values=value),
            gc.pad(g.input((3,)), ((4, 0),))]


@case("concatenate", {"concatenate"}, ALL)
def _concatenate(g):
    a, b, c = g.input((3, 5)), g.input((3, 1)), g.input((3, 7))
    return [gc.concatenate([a, b, c], axis=1), gc.concatenate([a, a], axis=0),
            gc.stack([a, a, a], axis=1), gc.concatenate([g.input((1,)), g.input((4,))])]


@case("concatenate-many-pieces", {"concatenate", "exp", "reduce_sum"}, (F32, F64))
def _concatenate_many(g):
    rows = [g.input((n % 3 + 1, 5)) for n in range(size(30))]
    cols = [g.input((4, n % 2 + 1)) for n in range(size(23))]
    stacked = gc.concatenate([gc.exp(r) for r in rows], axis=0)
    wide = gc.concatenate([gc.exp(c) for c in cols], axis=1)
    return [stacked, gc.sum(stacked, axis=0), gc.sum(wide, axis=0), gc.sum(wide, axis=1)]


@case("concatenate-in-place", {"concatenate", "exp", "reduce_sum", "reduce_max"}, FLOATS)
def _concatenate_in_place(g):
    """Pieces of 1024 elements: written into the stacked buffer (a view) where aligned."""
    pieces = [gc.exp(g.input((16, 64)) * 0.5) for _ in range(6)]
    stacked = gc.concatenate(pieces, axis=0)
    inner = gc.concatenate(pieces[1:], axis=0)
    middle = gc.concatenate([gc.tanh(p) for p in pieces[2:4]], axis=0)
    return [gc.sum(stacked, axis=0), gc.max(stacked, axis=1), gc.sum(inner, axis=1),
            gc.max(inner, axis=0), pieces[0] + 1, middle * 2]


@case("matmul-pieces-epilogue", {"matmul", "concatenate", "tanh"}, (F32, F64))
def _matmul_pieces_epilogue(g):
    """Concatenations of a GEMM's epilogue values: the GEMM stores each piece (codegen/stores)."""
    x, w = g.input((size(13), 7)), g.input((7, 9))
    y = x @ w
    pieces = [gc.tanh(y), y * 2, y + x[:, :1]]
    return [gc.concatenate(pieces, axis=1), gc.concatenate(pieces[::-1], axis=0)]


@case("take", {"take"}, ALL)
def _take(g):
    x = g.input((7, 5))
    rows = g.input((3, 4), I32, low=-7, high=6)
    cols = g.input((6,), I64, low=-5, high=4)
    flat = g.input((), I32, low=0, high=34)
    return [gc.take(x, rows, axis=0), gc.take(x, cols, axis=1), gc.take(x, flat),
            gc.take(x, g.input((2,), I32, low=0, high=34), axis=None)]


@case("one_hot", {"one_hot"}, (I32, I64))
def _one_hot(g):
    idx = g.input((7,), low=-1, high=5)             # -1 and 5 are out of range: all zeros
    grid = g.input((3, 4), low=0, high=4)
    outs = [gc.one_hot(idx, 5), gc.one_hot(grid, 5, dtype=gc.int32, axis=0),
            gc.one_hot(grid, 3, dtype=gc.bool, axis=1)]
    return outs + [gc.one_hot(idx, 5, dtype=d) for d in (F64, F16) if d in g.supported]


# ---- contractions, pooling, softmax ----

@case("matmul", {"matmul"}, NUMERIC, tol=4)
def _matmul(g):
    low, high = (-3, 3)
    a, b = g.input((3, 4, 5), low=low, high=high), g.input((5, 6), low=low, high=high)
    c, d = g.input((2, 1, 3, 4), low=low, high=high), g.input((5, 4, 2), low=low, high=high)
    v = g.input((5,), low=low, high=high)
    return [a @ b, gc.matmul(c, d), gc.matmul(a, v), gc.matmul(v, b),
            gc.matmul(g.input((1, 1)), g.input((1, 1)))]


@case("conv2d", {"conv2d"}, FLOATS, tol=4)
def _conv2d(g):
    x = g.input((2, 4, 7, 7))
    return [gc.conv2d(x, g.input((6, 2, 3, 3)), stride=2, padding=1, groups=2),
            gc.conv2d(x, g.input((3, 4, 3, 2)), padding="same", dilation=2),
            gc.conv2d(g.input((1, 1, 5, 6)), g.input((1, 1, 1, 1))),
            gc.conv2d(x, g.input((4, 1, 3, 3)), stride=(1, 2), padding=((0, 2), (1, 0)), groups=4)]


@case("max_pool2d", {"max_pool2d"}, FLOATS)
def _max_pool2d(g):
    x = g.input((2, 3, 7, 7))
    return [gc.max_pool2d(x, 2), gc.max_pool2d(x, 3, stride=2, padding=1),
            gc.max_pool2d(x, (3, 2), stride=(1, 3), padding=(1, 0))]


@case("avg_pool2d", {"avg_pool2d"}, FLOATS)
def _avg_pool2d(g):
    x = g.input((2, 3, 7, 7))
    return [gc.avg_pool2d(x, 2), gc.avg_pool2d(x, 3, stride=2, padding=1),
            gc.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
            gc.avg_pool2d(x, (3, 2), stride=(1, 3), padding=(1, 0))]


@case("softmax", {"softmax"}, FLOATS)
def _softmax(g):
    return [gc.softmax(g.input((5, 13), low=-5, high=5)),
            gc.softmax(g.input((4, 7, 3), low=-5, high=5), axis=1),
            gc.softmax(g.input((1, 1))), gc.softmax(g.input((3, 16), low=-5, high=5))]


@case("log_softmax", {"log_softmax"}, FLOATS)
def _log_softmax(g):
    return [gc.log_softmax(g.input((5, 13), low=-5, high=5)),
            gc.log_softmax(g.input((2, 8), low=-5, high=5)),
            gc.log_softmax(g.input((4, 7, 3), low=-5, high=5), axis=0),
            gc.log_softmax(g.input((3,)))]


# ---- backward-only ops, reached through gc.grad ----

def _cotangent(g, y):
    return g.input(y.shape)


def _vjp(g, y, wrt) -> list:
    """[d(sum(y * u))/d(w) for w in wrt] for a fed cotangent u."""
    return gc.grad(gc.sum(y * _cotangent(g, y)), wrt if isinstance(wrt, list) else [wrt])


@case("slice_grad", {"slice_grad"}, FLOATS)
def _slice_grad(g):
    x = g.input((7, 13))
    return _vjp(g, x[1:6, 2:11:3], x) + _vjp(g, x[::-2, 4], x)


@case("take_grad", {"take_grad"}, FLOATS, tol=2)
def _take_grad(g):
    x = g.input((7, 5))
    rows = g.input((3, 4), I32, values=[[0, 1, -1, 1], [6, 6, 2, -7], [3, 3, 3, 0]])
    cols = g.input((2,), I64, low=-5, high=4)
    return _vjp(g, gc.take(x, rows, axis=0), x) + _vjp(g, gc.take(x, cols, axis=1), x)


@case("conv2d_grads", {"conv2d_grad_input", "conv2d_grad_weight"}, FLOATS, tol=8)
def _conv2d_grads(g):
    x, w = g.input((2, 4, 7, 6)), g.input((6, 2, 3, 2))
    y = gc.conv2d(x, w, stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2), groups=2)
    return _vjp(g, y, [x, w])


@case("max_pool2d_grads", {"max_pool2d_grad", "max_pool2d_select"}, FLOATS)
def _max_pool2d_grads(g):
    x = g.input((2, 3, 7, 7))
    u = g.input((2, 3, 4, 4))
    dx = gc.grad(gc.sum(gc.max_pool2d(x, 3, stride=2, padding=1) * u), x)
    du = gc.grad(gc.sum(dx * g.input(x.shape)), u)          # max_pool2d_select
    tiles = g.input((2, 3, 6, 4), low=-2, high=2, discrete=True)   # ties: the first max wins
    dt = gc.grad(gc.sum(gc.max_pool2d(tiles, 2) * g.input((2, 3, 3, 2))), tiles)
    wide = g.input((1, 2, 4, 9), low=-2, high=2, discrete=True)    # 2x3 windows tile it
    dw = gc.grad(gc.sum(gc.max_pool2d(wide, (2, 3)) * g.input((1, 2, 2, 3))), wide)
    return [dx, du, dt, dw]


@case("avg_pool2d_grad", {"avg_pool2d_grad"}, FLOATS)
def _avg_pool2d_grad(g):
    x = g.input((2, 3, 7, 7))
    return (_vjp(g, gc.avg_pool2d(x, 3, stride=2, padding=1), x)
            + _vjp(g, gc.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=False), x))


# ---- random ops: the device draws the interpreter's numbers, and new ones each call ----

@case("random_uniform", {"random_uniform"}, (F32, F64), exact=True, calls=2)
def _random_uniform(g):
    return [gc.random.uniform((7, 13), -1.0, 2.0, dtype=g.dtype),
            gc.random.uniform((1,), dtype=g.dtype, seed=5)]


@case("random_normal", {"random_normal"}, (F32, F64), calls=2, tol=4)
def _random_normal(g):
    return [gc.random.normal((7, 13), 1.0, 3.0, dtype=g.dtype),
            gc.random.normal((3,), dtype=g.dtype, seed=5)]


@case("random_bernoulli", {"random_bernoulli"}, ALL, exact=True, calls=2)
def _random_bernoulli(g):
    return [gc.random.bernoulli((7, 13), 0.3, dtype=g.dtype),
            gc.random.bernoulli((1,), 0.9, dtype=g.dtype, seed=5)]


@case("dropout", {"random_bernoulli", "multiply"}, FLOATS, calls=2)
def _dropout(g):
    return [gc.random.dropout(g.input((7, 13)), 0.25)]


# ---- broadcasting: scalars, 0-d tensors, size-1 dimensions ----

@case("broadcast-3way", {"add", "multiply"}, (F32, I64))
def _broadcast_3way(g):
    a, b, c = g.input((1,)), g.input((7, 1, 13)), g.input((1, 5, 1))
    return [a + b * c, (b + 1) * c, c * 2 + a]


@case("broadcast-0d", {"add", "maximum", "where"}, (F32, F64))
def _broadcast_0d(g):
    s, t = g.input(()), g.input(())
    x = g.input((1, 1))
    return [s + t, gc.maximum(s, 0.5) * 3, x + s, gc.where(s > t, x, t), s + 1]


@case("broadcast-size1", {"subtract", "exp", "reduce_sum"}, (F32,))
def _broadcast_size1(g):
    x, y = g.input((1, 7, 1)), g.input((3, 1, 1))
    d = gc.exp(x - y)
    return [d, gc.sum(d, axis=1), gc.sum(d, axis=(0, 2), keepdims=True), gc.sum(g.input((1, 1)))]


@case("constants", {"add", "multiply"}, (F32, I32))
def _constants(g):
    x = g.input((7, 13))
    table = np.arange(13).astype(g.dtype)
    return [x + table, gc.constant(table) * x + 1, x * gc.constant(np.full((7, 1), 3, g.dtype))]


# ---- views feeding elementwise ops, reductions and contractions ----

@case("view-transpose-elementwise", {"transpose", "add", "tanh"}, (F32, F64))
def _view_transpose(g):
    x, y = g.input((7, 13)), g.input((13, 7))
    return [gc.tanh(x.T + y), gc.transpose(g.input((2, 3, 5)), (1, 2, 0)) * 2.0]


@case("view-transpose-reduce", {"transpose", "reduce_sum", "reduce_max"}, (F32, I32))
def _view_transpose_reduce(g):
    x = g.input((5, 7, 3))
    t = gc.transpose(x, (2, 0, 1))
    return [gc.sum(t, axis=1), gc.max(t, axis=(0, 2)), gc.sum(t * t, axis=2, keepdims=True)]


@case("view-slice-reduce", {"slice", "multiply", "reduce_sum", "reduce_min"}, (F32, I64))
def _view_slice_reduce(g):
    x = g.input((9, 13))
    v = x[::-2, 1:12:3] * x[0::2, 2:12:3]
    return [gc.sum(v, axis=0), gc.min(x[2:7, ::-1], axis=1), v]


@case("view-reshape-chain", {"reshape", "transpose", "reduce_max"}, (F32, BOOL))
def _view_reshape_chain(g):
    x = g.input((6, 35))
    r = gc.transpose(x.reshape((2, 3, 5, 7)), (3, 1, 0, 2)).reshape((21, 10))
    return [r, gc.max(r, axis=1), gc.max(r.reshape((7, 3, 10)), axis=(0, 2))]


@case("view-broadcast-reduce", {"broadcast_to", "reduce_sum", "multiply"}, (F32, I32))
def _view_broadcast_reduce(g):
    b = gc.broadcast_to(g.input((7, 1)), (7, 13))
    return [gc.sum(b * g.input((13,)), axis=0), gc.sum(gc.broadcast_to(g.input(()), (4, 5)))]


@case("view-getitem-none", {"slice", "add"}, (F32,))
def _view_getitem(g):
    x = g.input((7, 13))
    return [x[None, 3, 2:9] + x[:, None, 0], x[..., 4][:, None] + 1]


@case("view-pad-concat-reduce", {"pad", "concatenate", "reduce_sum", "argmax"}, (F32, I32))
def _view_pad_concat(g):
    x, y = g.input((5, 7)), g.input((5, 3))
    p = gc.pad(x, ((1, 0), (2, 2)), constant_values=1)
    c = gc.concatenate([x, y, x[:, :2]], axis=1)
    return [gc.sum(p, axis=1), gc.argmax(c, axis=1), gc.sum(gc.concatenate([p, p], axis=0))]


@case("view-take-reduce", {"take", "reduce_sum", "exp"}, (F32,))
def _view_take_reduce(g):
    x = g.input((7, 5))
    rows, cols = g.input((4,), I32, low=-7, high=6), g.input((3,), I64, low=-5, high=4)
    return [gc.sum(gc.take(gc.exp(x), rows, axis=0), axis=0), gc.take(x.T, cols, axis=0)]


@case("view-matmul", {"transpose", "slice", "matmul"}, (F32, F64), tol=4)
def _view_matmul(g):
    a, b = g.input((5, 4)), g.input((6, 5))
    return [a.T @ b.T, a[::2, 1:] @ b[:3, ::-2].T, gc.matmul(gc.exp(a), g.input((4, 3)))]


@case("head-view-matmul", {"transpose", "reshape", "matmul", "add"}, (F32, F64), tol=4)
def _head_view_matmul(g):
    """Attention's head views: matmul operands that are reshapes and transposes of computed
    values (read through index arithmetic), batch and row parts of several digits."""
    x, w, b = g.input((2 * 5, 6)), g.input((6, 3 * 4)), g.input((12,))
    flat = x @ w + b                                                  # (batch * steps, h * d)
    heads = gc.reshape(gc.transpose(gc.reshape(flat, (2, 5, 3, 4)), (0, 2, 1, 3)), (6, 5, 4))
    scores = heads @ gc.transpose(heads, (0, 2, 1))                   # (6, 5, 5)
    mixed = scores @ heads                                            # (6, 5, 4)
    merged = gc.reshape(gc.transpose(gc.reshape(mixed, (2, 3, 5, 4)), (0, 2, 1, 3)), (10, 12))
    return [scores, merged @ gc.transpose(w), gc.transpose(merged) @ x,
            gc.transpose(gc.reshape(x, (2, 5, 6)), (0, 2, 1)) @ gc.reshape(flat, (2, 5, 12))]


@case("view-softmax-pool", {"transpose", "softmax", "max_pool2d", "reshape"}, (F32,))
def _view_softmax_pool(g):
    x = g.input((7, 5))
    p = g.input((2, 7, 7, 3))
    return [gc.softmax(x.T * 2.0), gc.max_pool2d(gc.transpose(p, (0, 3, 1, 2)), 2),
            gc.log_softmax(x.reshape((5, 7)) + 1.0)]


# ---- odd sizes: 1, primes, and not multiples of any work-group size ----

def _odd(n):
    def build(g):
        x = g.input((size(n),))
        m = g.input((3, size(n)))
        return [gc.exp(x) * 2.0 + x, gc.sum(x), gc.max(m, axis=1), gc.sum(m, axis=0),
                gc.argmax(m, axis=1), gc.softmax(m), x[::-1] + x]
    return build


for _n in ODD_SIZES:
    if size(_n) == _n:
        add_case(f"odd-{_n}", {"exp", "reduce_sum", "reduce_max", "argmax", "softmax", "slice"},
                 (F32,), _odd(_n), tol=4)


@case("odd-matmul", {"matmul"}, (F32,), tol=4)
def _odd_matmul(g):
    n = size(127)
    return [g.input((7, n)) @ g.input((n, 13)), g.input((1, 13)) @ g.input((13, 1))]


# ---- gradients of representative graphs, compiled on the device ----

@case("grad-conv2d", {"conv2d", "conv2d_grad_input", "conv2d_grad_weight"}, (F32, F64), tol=8)
def _grad_conv2d(g):
    x, w, b = g.input((2, 3, 6, 6)), g.input((4, 3, 3, 3)), g.input((4,))
    y = gc.relu(gc.conv2d(x, w, padding=1, bias=b))
    return gc.grad(gc.sum(y * y), [x, w, b])


@case("grad-pools", {"max_pool2d", "avg_pool2d", "max_pool2d_grad", "avg_pool2d_grad"},
      (F32, F64))
def _grad_pools(g):
    x = g.input((2, 2, 7, 7))
    y = gc.max_pool2d(gc.tanh(x), 3, stride=2, padding=1) + gc.avg_pool2d(x, 3, stride=2, padding=1)
    return [gc.grad(gc.sum(y * y), x)]


@case("grad-softmax", {"softmax", "log_softmax"}, (F32, F64))
def _grad_softmax(g):
    x, y = g.input((5, 7)), g.input((5, 7), low=0, high=1)
    loss = gc.sum(gc.softmax(x) * y) + gc.sum(gc.log_softmax(x, axis=0) * y)
    return [gc.grad(loss, x)]


@case("layer-norm", {"layer_norm", "layer_norm_grad"}, FLOATS, tol=4)
def _layer_norm(g):
    """Rows of 13 (a vector and a remainder), of 16, of 3 (no vector); the gradient by x,
    gamma and beta under a fed direction."""
    x, gamma, beta = g.input((5, 13), low=-3, high=4), g.input((13,)), g.input((13,))
    y = gc.layer_norm(x, gamma, beta, epsilon=1e-3)
    z = g.input((2, 3, 16), low=-2, high=2)
    loss = gc.sum(y * g.input((5, 13)))
    return [y, gc.layer_norm(z, epsilon=1e-5), gc.layer_norm(g.input((4, 3)))] \
        + gc.grad(loss, [x, gamma, beta])


@case("grad-take", {"take", "take_grad", "one_hot"}, (F32, F64))
def _grad_take(g):
    emb = g.input((9, 4))
    idx = g.input((3, 5), I32, low=0, high=8)
    labels = gc.one_hot(g.input((3,), I32, low=0, high=3), 4)
    h = gc.sum(gc.take(emb, idx, axis=0), axis=1)
    loss = gc.sum(gc.losses.categorical_crossentropy(labels, h, from_logits=True))
    return [loss, gc.grad(loss, emb)]


XENT = {"softmax_cross_entropy", "softmax_cross_entropy_grad"}


def _weighted_xent_grads(g, x, targets, axis=-1):
    """The loss rows and their gradient by x under a fed row weighting (an inline g)."""
    loss = gc.softmax_cross_entropy(x, targets, axis=axis)
    return [loss, gc.grad(gc.sum(loss * g.input(loss.shape, low=0.5, high=2)), x)]


@case("softmax-cross-entropy", XENT, FLOATS)
def _softmax_cross_entropy(g):
    """Labels at both ends of the class range, a prime and a long class axis, axis 0, one
    row; dense targets; a gradient that reads the loss (its own kernel). Out-of-range labels
    are an error in the interpreter: the device's answer to them is tested in
    test_index_range.py."""
    x = g.input((6, 13), low=-8, high=8)
    out = _weighted_xent_grads(g, x, g.input((6,), I32, values=[3, 0, 12, 12, 0, 7]))
    long_x = g.input((3, size(1001)), low=-5, high=5)
    out += _weighted_xent_grads(g, long_x, g.input((3,), I64, low=0, high=size(1001) - 1))
    cube = g.input((4, 7, 3), low=-5, high=5)
    out += _weighted_xent_grads(g, cube, g.input((7, 3), I32, low=0, high=3), axis=0)
    out += _weighted_xent_grads(g, g.input((1, 5)), g.input((1,), I32, low=0, high=4))
    soft = gc.softmax(g.input((5, 7)))
    dense = gc.softmax_cross_entropy(x[:5, :7], soft, axis=1)
    out += [dense, *gc.grad(gc.sum(dense * dense), [x, soft])]
    return out


@case("grad-matmul-batched", {"matmul", "reduce_sum"}, (F32, F64), tol=8)
def _grad_matmul(g):
    a, b, c = g.input((2, 3, 4, 5)), g.input((3, 5, 6)), g.input((6,))
    y = gc.sigmoid(gc.matmul(a, b) + c)
    return [y] + gc.grad(gc.mean(y * y), [a, b, c])


@case("grad-reductions-views", {"reduce_max", "reduce_sum", "slice_grad", "pad"}, (F32, F64))
def _grad_reductions(g):
    x = g.input((6, 8), low=-2, high=2, discrete=True)       # ties share max's gradient
    y = gc.max(x[1:, ::2], axis=1) * gc.sum(gc.pad(x, 1) ** 2, axis=(0,))[:5]
    return [gc.grad(gc.sum(y) + gc.sum(gc.min(x, axis=0)), x)]


# ---- collectives (gc.distributed): one rank's result in a single process ----

@case("collectives", {"allreduce", "allgather", "allgather_grad", "broadcast",
                      "broadcast_grad"}, (F32, F64, I32, F16), exact=True)
def _collectives(g):
    from graphc.builder import apply
    a, b = g.input((7, 13)), g.input((13,))
    outputs = [gc.distributed.allreduce(a * b, op="sum") + 1,      # from a kernel's buffer
               gc.distributed.allgather(a),                        # straight from a feed
               gc.distributed.broadcast(gc.reshape(a, (13, 7)), 0),  # a reshape, read in place
               apply("allgather_grad", [a * 2], ranks=1),
               apply("broadcast_grad", [b], root=0) * b,
               gc.distributed.allreduce(gc.constant(np.array(3, g.dtype)), op="sum")]
    if g.dtype.kind == "f":      # averages need floats; two of them share a bucket
        outputs += [gc.distributed.allreduce(a - 1.0) + gc.distributed.allreduce(a + 1.0)]
    return outputs


# ---- the suite on another OpenCL implementation, in a child pytest ----

SUITE = Path(__file__).resolve().parent / "test_device_ops.py"


def run_suite(env: dict, timeout: float = 540, suite: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Run test_device_ops.py (or `suite`) in a child pytest with `env` added.

    -s lets the driver's own stderr (Oclgrind's API checks) through to the caller."""
    command = [sys.executable, "-m", "pytest", str(suite or SUITE), "-s", "-p",
               "no:cacheprovider",
               "-W", "ignore::Warning"]
    child_env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}  # the whole suite
    return subprocess.run(command, env={**child_env, **env}, cwd=SUITE.parent.parent,
                          capture_output=True, text=True, timeout=timeout)


def has_platform(name: str, env: dict) -> bool:
    """Does an OpenCL platform whose name contains `name` list a device, under `env`?"""
    probe = ("from graphc.runtime import devices; raise SystemExit(0 if any(%r in "
             "d.platform_name.lower() for d in devices()) else 1)" % name.lower())
    child = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                           cwd=SUITE.parent.parent, capture_output=True, timeout=120)
    return child.returncode == 0


def summary(result: subprocess.CompletedProcess) -> str:
    """The child's last lines, for an assertion message."""
    return (result.stdout[-6000:] + "\n--- stderr ---\n" + result.stderr[-3000:]).strip()
