"""How movement ops, one_hot and random ops are computed inline: index maps, guarded choices
and Philox draws in the kernel IR (the lowering registry, codegen/lowerings.py, names each
op's rule; codegen/lower.py runs them).

Movement ops only transform the index (reshape = flatten then unflatten, transpose =
permute, slice = affine, pad and concatenate = guarded choices), so they cost no copy. A rule
is a generator: it yields the (value, index, valid) it needs and is sent back that value's
expression, so deep cones lower on an explicit stack (see Lowering.at).
"""
from __future__ import annotations

import numpy as np

from graphc import philox
from graphc.codegen.index import Lin, flatten, floordiv, unflatten
from graphc.codegen.kernel import Apply, Cond, Const, IndexValue, Random, Select
from graphc.ir import Tensor


def contiguous_pieces(t: Tensor) -> bool:
    """Is `t` a concatenation whose pieces are contiguous blocks of its memory?"""
    node = t.producer
    if node is None or node.op != "concatenate":
        return False
    axis = node.attrs["axis"]
    return int(np.prod(t.shape[:axis], dtype=np.int64)) == 1


def broadcast_index(idx, in_shape, out_shape) -> list[Lin]:
    """The index into an operand of `in_shape` broadcast to `out_shape`."""
    lead = len(out_shape) - len(in_shape)
    return [Lin() if d == 1 else idx[lead + i] for i, d in enumerate(in_shape)]


def reshape_rule(low, t, node, idx, valid):
    (x,) = node.inputs
    return (yield x, unflatten(flatten(idx, t.shape), x.shape), valid)


def transpose_rule(low, t, node, idx, valid):
    (x,) = node.inputs
    source = [None] * x.ndim
    for out_axis, in_axis in enumerate(node.attrs["perm"]):
        source[in_axis] = idx[out_axis]
    return (yield x, source, valid)


def broadcast_to_rule(low, t, node, idx, valid):
    (x,) = node.inputs
    return (yield x, broadcast_index(idx, x.shape, t.shape), valid)


def slice_rule(low, t, node, idx, valid):
    (x,) = node.inputs
    a = node.attrs
    return (yield x, [i * step + start for i, start, step
                       in zip(idx, a["starts"], a["steps"])], valid)


def slice_grad_rule(low, t, node, idx, valid):
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


def pad_rule(low, t, node, idx, valid):
    (x,) = node.inputs
    conds, source = [], []
    for i, (before, _), size in zip(idx, node.attrs["pad_width"], x.shape):
        source.append(i - before)
        conds += [Cond(i, ">=", before), Cond(i, "<", before + size)]
    conds = tuple(conds)
    return Select(t.dtype, conds, (yield x, source, valid + conds),
                  Const(t.dtype, node.attrs["value"]))


def concatenate_rule(low, t, node, idx, valid):
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


def take_rule(low, t, node, idx, valid):
    x, indices = node.inputs
    axis = node.attrs["axis"]
    k = indices.ndim
    position = yield indices, idx[axis:axis + k], valid
    source = list(idx[:axis]) + [Lin()] + list(idx[axis + k:])
    stride = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    if x in low.buffers or x.producer is None:
        return low.load(x, source, valid, ((position, stride, x.shape[axis]),))
    raise NotImplementedError("take from a computed value must read a buffer")


def one_hot_rule(low, t, node, idx, valid):
    (indices,) = node.inputs
    axis = node.attrs["axis"]
    rest = list(idx[:axis]) + list(idx[axis + 1:])
    position = yield indices, rest, valid
    here = IndexValue(indices.dtype, idx[axis])
    hot = Apply(np.dtype(bool), "equal", (position, here))
    return Apply(t.dtype, "cast", (hot,), (("dtype", t.dtype),))


def _random(low, t, node, idx, dist, params):
    low.uses_step = True
    # uniform and normal draw in their own float type; bernoulli compares a float32
    drawn = np.dtype(np.float32) if dist == "bernoulli" else t.dtype
    blocks = philox.blocks_used(dist, t.size, drawn)
    value = Random(drawn, dist, node.attrs["seed"], blocks, flatten(idx, t.shape), params)
    return value if t.dtype == drawn else Apply(t.dtype, "cast", (value,),
                                                (("dtype", t.dtype),))


def random_uniform_rule(low, t, node, idx, valid):
    return _random(low, t, node, idx, "uniform", (node.attrs["low"], node.attrs["high"]))


def random_normal_rule(low, t, node, idx, valid):
    return _random(low, t, node, idx, "normal", (node.attrs["mean"], node.attrs["std"]))


def random_bernoulli_rule(low, t, node, idx, valid):
    return _random(low, t, node, idx, "bernoulli", (node.attrs["p"], 0.0))


def _nonnegative(form: Lin, span: int) -> tuple[Lin, int]:
    """`form + bias` with a bias making it non-negative (our div/mod need that)."""
    lo, _ = form.bounds
    bias = 0 if lo >= 0 else -lo + (span - (-lo) % span) % span
    return form + bias, bias

