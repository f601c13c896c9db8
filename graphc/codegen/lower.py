"""Lowering graph values to kernel-IR expressions at symbolic indices.

`Lowering.at(t, idx)` is the value of tensor `t` at multi-index `idx`: a load when `t`
lives in a buffer, otherwise the expression of its producer, built from its inputs' values.
Movement ops only transform the index (reshape = flatten then unflatten, transpose =
permute, slice = affine, pad and concatenate = guarded choices), so they cost no copy.

A kernel's cone can be tens of thousands of ops deep, so the walk keeps its own stack
instead of Python's: each op's rule is a generator that yields the (value, index, valid)
it needs and is sent back that value's expression.
"""
from __future__ import annotations

from collections.abc import Generator

import numpy as np

from graphc import philox
from graphc.codegen.index import Lin, flatten, floordiv, lin, unflatten
from graphc.codegen.kernel import Apply, Cond, Const, IndexValue, Load, Random, Select
from graphc.ir import Tensor
from graphc.ops import get_op

INLINE_OPS = {"reshape", "transpose", "broadcast_to", "slice", "slice_grad", "pad",
              "concatenate", "take", "one_hot", "random_uniform", "random_normal",
              "random_bernoulli"}


def inlinable(t: Tensor) -> bool:
    """Can `t` be computed inside its consumer's kernel (no loop of its own)?"""
    return t.producer is not None and (
        get_op(t.producer.op).kind == "elementwise" or t.producer.op in INLINE_OPS)


def broadcast_index(idx, in_shape, out_shape) -> list[Lin]:
    """The index into an operand of `in_shape` broadcast to `out_shape`."""
    lead = len(out_shape) - len(in_shape)
    return [Lin() if d == 1 else idx[lead + i] for i, d in enumerate(in_shape)]


class Lowering:
    """Turns the cone of a kernel's root into expressions over index forms."""

    def __init__(self, buffers: dict[Tensor, str], accumulated=None):
        self.buffers = buffers
        self.accumulated = accumulated      # (tensor, idx, expr) read as the accumulator
        self.computing: set[Tensor] = set()  # values this kernel computes (not loads)
        self.uses_step = False
        self.locals: dict[str, str] = {}        # plan buffer -> kernel parameter name
        self.dtypes: dict[str, np.dtype] = {}
        self.ops: dict = {}         # the nodes lowered, in order (a dict: ordered set)
        self.lowered: dict = {}     # (t, idx, valid, accumulated) -> expression

    def local(self, buffer: str, dtype) -> str:
        """The kernel parameter for plan buffer `buffer` (positional names: identical
        kernels over different buffers render identically and compile once)."""
        if buffer not in self.locals:
            self.locals[buffer] = f"b{len(self.locals)}"
            self.dtypes[buffer] = np.dtype(dtype)
        return self.locals[buffer]

    def at(self, t: Tensor, idx, valid=()) -> object:
        """The value of `t` at index `idx` (loads guarded by `valid`)."""
        ready, key = self._lookup(t, idx, valid)
        if key is None:
            return ready
        stack = [(key, self._lower(t, list(key[1]), valid))]
        sent = None
        while stack:
            key, rule = stack[-1]
            try:
                request = rule.send(sent)
            except StopIteration as done:
                stack.pop()
                self.lowered[key] = sent = done.value
                continue
            sent, child = self._lookup(*request)
            if child is not None:
                stack.append((child, self._lower(request[0], list(child[1]), request[2])))
        return sent

    def _lookup(self, t: Tensor, idx, valid=()) -> tuple:
        """(expression, None) when `t` at `idx` is a load or already lowered, else (None,
        the memo key under which to lower it)."""
        idx = [lin(i) for i in idx]
        if self.accumulated is not None and t is self.accumulated[0] \
                and idx == list(self.accumulated[1]):
            return self.accumulated[2], None
        if (t in self.buffers and t not in self.computing) or t.producer is None:
            return self.load(t, idx, valid), None
        key = (id(t), tuple(idx), tuple(valid), id(self.accumulated))   # == is elementwise
        if key in self.lowered:     # a value read twice at one index is lowered once
            return self.lowered[key], None
        return None, key

    def _lower(self, t: Tensor, idx, valid):
        """A generator: yields (value, index, valid) requests, returns `t`'s expression."""
        node = t.producer
        self.ops.setdefault(node, None)
        if get_op(node.op).kind == "elementwise":
            args = []
            for a in node.inputs:
                args.append((yield a, broadcast_index(idx, a.shape, t.shape), valid))
            return Apply(t.dtype, node.op, tuple(args), tuple(sorted(node.attrs.items())))
        rule = getattr(self, "_" + node.op)(t, node, idx, valid)
        return (yield from rule) if isinstance(rule, Generator) else rule

    def load(self, t: Tensor, idx, valid=(), dynamic=()) -> object:
        """A load of `t` from its buffer (0-d constants become literals)."""
        if t.role == "constant" and t.size == 1 and t not in self.buffers:
            return Const(t.dtype, t.data.reshape(()).item())
        name = self.local(self.buffers[t], t.dtype)
        return Load(t.dtype, name, flatten(idx, t.shape), tuple(valid), tuple(dynamic))

    # ---- movement ops: index maps ----

    def _reshape(self, t, node, idx, valid):
        (x,) = node.inputs
        return (yield x, unflatten(flatten(idx, t.shape), x.shape), valid)

    def _transpose(self, t, node, idx, valid):
        (x,) = node.inputs
        source = [None] * x.ndim
        for out_axis, in_axis in enumerate(node.attrs["perm"]):
            source[in_axis] = idx[out_axis]
        return (yield x, source, valid)

    def _broadcast_to(self, t, node, idx, valid):
        (x,) = node.inputs
        return (yield x, broadcast_index(idx, x.shape, t.shape), valid)

    def _slice(self, t, node, idx, valid):
        (x,) = node.inputs
        a = node.attrs
        return (yield x, [i * step + start for i, start, step
                           in zip(idx, a["starts"], a["steps"])], valid)

    def _slice_grad(self, t, node, idx, valid):
        (g,) = node.inputs
        a = node.attrs
        conds, source = [], []
        for i, start, step, size in zip(idx, a["starts"], a["steps"], g.shape):
            shifted, bias = _nonnegative((i - start) * (1 if step > 0 else -1), abs(step) * size)
            conds += [Cond(shifted, ">=", bias), Cond(shifted % abs(step), "==", bias % abs(step))]
            source.append(floordiv(shifted, abs(step)) - bias // abs(step))
            conds.append(Cond(source[-1], "<", size))
        conds = tuple(conds)
        return Select(t.dtype, conds, (yield g, source, valid + conds), Const(t.dtype, 0))

    def _pad(self, t, node, idx, valid):
        (x,) = node.inputs
        conds, source = [], []
        for i, (before, _), size in zip(idx, node.attrs["pad_width"], x.shape):
            source.append(i - before)
            conds += [Cond(i, ">=", before), Cond(i, "<", before + size)]
        conds = tuple(conds)
        return Select(t.dtype, conds, (yield x, source, valid + conds),
                      Const(t.dtype, node.attrs["value"]))

    def _concatenate(self, t, node, idx, valid):
        axis = node.attrs["axis"]
        pieces, start = [], 0
        for x in node.inputs:
            size = x.shape[axis]
            conds = (Cond(idx[axis], ">=", start), Cond(idx[axis], "<", start + size))
            source = list(idx)
            source[axis] = idx[axis] - start
            pieces.append((conds, (yield x, source, valid + conds)))
            start += size
        result = pieces[-1][1]
        for conds, value in reversed(pieces[:-1]):
            result = Select(t.dtype, conds, value, result)
        return result

    def _take(self, t, node, idx, valid):
        x, indices = node.inputs
        axis = node.attrs["axis"]
        k = indices.ndim
        position = yield indices, idx[axis:axis + k], valid
        source = list(idx[:axis]) + [Lin()] + list(idx[axis + k:])
        stride = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
        if x in self.buffers or x.producer is None:
            return self.load(x, source, valid, ((position, stride, x.shape[axis]),))
        raise NotImplementedError("take from a computed value must read a buffer")

    def _one_hot(self, t, node, idx, valid):
        (indices,) = node.inputs
        axis = node.attrs["axis"]
        rest = list(idx[:axis]) + list(idx[axis + 1:])
        position = yield indices, rest, valid
        here = IndexValue(indices.dtype, idx[axis])
        hot = Apply(np.dtype(bool), "equal", (position, here))
        return Apply(t.dtype, "cast", (hot,), (("dtype", t.dtype),))

    def _random(self, t, node, idx, dist, params):
        self.uses_step = True
        # uniform and normal draw in their own float type; bernoulli compares a float32
        drawn = np.dtype(np.float32) if dist == "bernoulli" else t.dtype
        blocks = philox.blocks_used(dist, t.size, drawn)
        value = Random(drawn, dist, node.attrs["seed"], blocks, flatten(idx, t.shape), params)
        return value if t.dtype == drawn else Apply(t.dtype, "cast", (value,),
                                                    (("dtype", t.dtype),))

    def _random_uniform(self, t, node, idx, valid):
        return self._random(t, node, idx, "uniform", (node.attrs["low"], node.attrs["high"]))

    def _random_normal(self, t, node, idx, valid):
        return self._random(t, node, idx, "normal", (node.attrs["mean"], node.attrs["std"]))

    def _random_bernoulli(self, t, node, idx, valid):
        return self._random(t, node, idx, "bernoulli", (node.attrs["p"], 0.0))


def _nonnegative(form: Lin, span: int) -> tuple[Lin, int]:
    """`form + bias` with a bias making it non-negative (our div/mod need that)."""
    lo, _ = form.bounds
    bias = 0 if lo >= 0 else -lo + (span - (-lo) % span) % span
    return form + bias, bias
