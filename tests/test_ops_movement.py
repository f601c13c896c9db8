"""Movement and indexing ops: interpreter vs numpy, build errors, adjoint vjps, gradients."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.lowerings import lowering_of
from graphc.builder import apply
from graphc.ops import get_op
from graphc.ops.indexing import slice_tensor

RNG = np.random.default_rng(7)
f32, f64, i32, i64, b = np.float32, np.float64, np.int32, np.int64, np.bool_


def arr(*shape, dtype=f32):
    """A random array of `shape` and `dtype` (ints in [-9, 9], bools fair coins)."""
    if np.dtype(dtype).kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return RNG.random(shape) < 0.5
    return RNG.integers(-9, 10, size=shape).astype(dtype)


def P(*shape, dtype=f32):
    """A placeholder of `shape` for the bad-input table."""
    return gc.placeholder(shape, dtype)


def run(build, arrays):
    """Feed `arrays` into placeholders, build with `build(*tensors)`, interpret."""
    tensors = [gc.placeholder(a.shape, a.dtype) for a in arrays]
    return gc.interpret(build(*tensors), dict(zip(tensors, arrays)))


IDX = np.array([[2, 0], [1, 2], [-1, 0]], dtype=np.int64)

# id, graphc function of the tensors, inputs, independent numpy expression of the arrays
CASES = [
    ("reshape_wild", lambda x: gc.reshape(x, (-1, 5)), [arr(3, 2, 5)],
     lambda a: a.reshape(6, 5)),
    ("reshape_0d_up", lambda x: gc.reshape(x, (1, 1)), [arr()], lambda a: a.reshape(1, 1)),
    ("reshape_to_0d", lambda x: gc.reshape(x, ()), [arr(1, dtype=i64)], lambda a: a.reshape(())),
    ("reshape_size0", lambda x: gc.reshape(x, (3, 0)), [arr(0, 3)], lambda a: a.reshape(3, 0)),
    ("reshape_method", lambda x: x.reshape(7, -1), [arr(7, 3, dtype=i32)],
     lambda a: a.reshape(7, 3)),
    ("reshape_bool", lambda x: x.reshape(-1), [arr(2, 3, dtype=b)], lambda a: a.ravel()),
    ("transpose_none", lambda x: gc.transpose(x), [arr(2, 3, 5)], lambda a: a.transpose(2, 1, 0)),
    ("transpose_neg", lambda x: gc.transpose(x, (-1, 0, 1)), [arr(2, 3, 5)],
     lambda a: np.moveaxis(a, 2, 0)),
    ("transpose_1d", lambda x: x.T, [arr(7)], lambda a: a),
    ("transpose_0d", lambda x: gc.transpose(x), [arr(dtype=i32)], lambda a: a),
    ("transpose_method", lambda x: x.transpose(1, 0), [arr(0, 3)], lambda a: a.T),
    ("bcast_lead", lambda x: gc.broadcast_to(x, (2, 3, 5)), [arr(3, 1)],
     lambda a: np.tile(a, (2, 1, 5))),
    ("bcast_0d", lambda x: gc.broadcast_to(x, 4), [arr(dtype=i64)], lambda a: np.full(4, a)),
    ("bcast_same", lambda x: gc.broadcast_to(x, (2, 3)), [arr(2, 3, dtype=b)], lambda a: a),
    ("bcast_size0", lambda x: gc.broadcast_to(x, (0, 3)), [arr(1, 3)],
     lambda a: np.zeros((0, 3), f32)),
    ("expand_neg", lambda x: gc.expand_dims(x, -1), [arr(2, 3)], lambda a: a[:, :, None]),
    ("expand_0d", lambda x: gc.expand_dims(x, 0), [arr()], lambda a: a.reshape(1)),
    ("expand_tuple", lambda x: gc.expand_dims(x, (0, 3)), [arr(2, 3)],
     lambda a: a.reshape(1, 2, 3, 1)),
    ("squeeze_all", lambda x: gc.squeeze(x), [arr(1, 3, 1, 2)], lambda a: a.reshape(3, 2)),
    ("squeeze_neg", lambda x: gc.squeeze(x, -2), [arr(1, 3, 1, 2)],
     lambda a: a.reshape(1, 3, 2)),
    ("squeeze_0d", lambda x: gc.squeeze(x), [arr(dtype=b)], lambda a: a),
    ("squeeze_tuple", lambda x: gc.squeeze(x, (0, 2)), [arr(1, 0, 1)],
     lambda a: a.reshape(0)),
    ("concat_three", lambda x, y, z: gc.concatenate([x, y, z], axis=1),
     [arr(2, 3), arr(2, 5), arr(2, 1)], lambda a, c, d: np.hstack([a, c, d])),
    ("concat_neg", lambda x, y: gc.concatenate((x, y), axis=-2), [arr(2, 3, 2), arr(2, 1, 2)],
     lambda a, c: np.hstack([a, c])),
    ("concat_one", lambda x: gc.concatenate([x]), [arr(3, dtype=i32)], lambda a: a),
    ("concat_mixed", lambda x, y: gc.concatenate([x, y]), [arr(2, dtype=i32), arr(3)],
     lambda a, c: np.r_[a.astype(f32), c]),
    ("concat_size0", lambda x, y: gc.concatenate([x, y]), [arr(0, 2), arr(3, 2, dtype=f64)],
     lambda a, c: c),
    ("concat_none", lambda x, y: gc.concatenate([x, y], axis=None), [arr(2, 2), arr(3)],
     lambda a, c: np.r_[a.ravel(), c]),
    ("stack_0", lambda x, y: gc.stack([x, y]), [arr(2, 3), arr(2, 3)],
     lambda a, c: np.array([a, c])),
    ("stack_neg", lambda x, y: gc.stack([x, y], axis=-1), [arr(2, 3), arr(2, 3)],
     lambda a, c: np.dstack([a, c])),
    ("stack_0d_mixed", lambda x, y, z: gc.stack([x, y, z]), [arr(dtype=b), arr(dtype=i32), arr()],
     lambda a, c, d: np.array([float(a), float(c), d], dtype=f32)),
    ("pad_int", lambda x: gc.pad(x, 1), [arr(2, 3)],
     lambda a: np.block([[np.zeros((1, 5))], [np.zeros((2, 1)), a, np.zeros((2, 1))],
                         [np.zeros((1, 5))]]).astype(f32)),
    ("pad_pair", lambda x: gc.pad(x, (1, 2), constant_values=7), [arr(3, dtype=i32)],
     lambda a: np.r_[[7], a, [7, 7]].astype(i32)),
    ("pad_per_axis", lambda x: gc.pad(x, ((0, 1), (2, 0))), [arr(1, 2, dtype=b)],
     lambda a: np.array([[0, 0, a[0, 0], a[0, 1]], [0, 0, 0, 0]], dtype=b)),
    ("pad_size0", lambda x: gc.pad(x, ((1, 1), (0, 0)), constant_values=-1.5),
     [arr(0, 2, dtype=f64)],
     lambda a: np.full((2, 2), -1.5)),
    ("get_int", lambda x: x[1], [arr(3, 4)], lambda a: a[1]),
    ("get_negint", lambda x: x[-1, -2], [arr(3, 4, dtype=i64)], lambda a: a[2, 2]),
    ("get_reverse", lambda x: x[::-1], [arr(5, 2)], lambda a: np.flipud(a)),
    ("get_none_ell_step", lambda x: x[None, ..., ::2], [arr(3, 4, 5)],
     lambda a: a[:, :, [0, 2, 4]].reshape(1, 3, 4, 3)),
    ("get_mid_step3", lambda x: x[1:-1, ::3], [arr(5, 7)], lambda a: a[[1, 2, 3]][:, [0, 3, 6]]),
    ("get_ell_int", lambda x: x[..., 0], [arr(2, 3, 4)], lambda a: a[:, :, 0]),
    ("get_empty", lambda x: x[5:2], [arr(7)], lambda a: np.zeros(0, f32)),
    ("get_neg_step2", lambda x: x[:, ::-2], [arr(2, 7)], lambda a: a[:, [6, 4, 2, 0]]),
    ("get_neg_step_mid", lambda x: x[4:0:-3], [arr(6)], lambda a: a[[4, 1]]),
    ("get_0d_empty_tuple", lambda x: x[()], [arr()], lambda a: a),
    ("get_0d_none", lambda x: x[None], [arr(dtype=i32)], lambda a: a.reshape(1)),
    ("get_trailing_none", lambda x: x[..., None], [arr(2, 3)], lambda a: a.reshape(2, 3, 1)),
    ("get_np_int", lambda x: x[np.int64(1), :], [arr(2, 3)], lambda a: a[1]),
    ("get_clamped", lambda x: x[-100:100], [arr(3)], lambda a: a),
    ("get_big_step", lambda x: x[::-7], [arr(3)], lambda a: a[[2]]),
    ("get_size0_dim", lambda x: x[:, 1], [arr(0, 3)], lambda a: np.zeros(0, f32)),
    ("take_flat", lambda x: gc.take(x, IDX), [arr(2, 3)], lambda a: a.ravel()[IDX % 6]),
    ("take_axis1", lambda x: gc.take(x, IDX, axis=1), [arr(2, 3, 2)],
     lambda a: np.stack([a[:, i % 3] for i in IDX.ravel()], 1).reshape(2, 3, 2, 2)),
    ("take_scalar_idx", lambda x: gc.take(x, 1, axis=-1), [arr(2, 3, dtype=i64)],
     lambda a: a[:, 1]),
    ("take_fed_idx", lambda x, i: gc.take(x, i, axis=0), [arr(4, 2), np.array([3, 3, 0], i32)],
     lambda a, i: a[[3, 3, 0]]),
    ("take_empty", lambda x: gc.take(x, np.zeros(0, i32), axis=0), [arr(0, 2)],
     lambda a: np.zeros((0, 2), f32)),
]


@pytest.mark.parametrize("build, inputs, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_against_numpy(build, inputs, expected):
    got = run(build, inputs)
    want = np.asarray(expected(*inputs))
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


# Each builder sits on one line: that line is the `created at` the error must show.
BAD = [
    (lambda: gc.reshape(P(3, 4), (5,)), gc.ShapeError, "reshape", "12 elements"),
    (lambda: gc.reshape(P(3, 4), (-1, -1)), gc.ShapeError, "reshape", "only one dimension"),
    (lambda: gc.reshape(P(0, 3), (-1, 0)), gc.ShapeError, "reshape", "0 elements"),
    (lambda: gc.transpose(P(2, 3), (0, 0)), gc.ShapeError, "transpose", "not a permutation"),
    (lambda: gc.transpose(P(2, 3), (0,)), gc.ShapeError, "transpose", "not a permutation"),
    (lambda: gc.broadcast_to(P(3), (4,)), gc.ShapeError, "broadcast_to", "(3,) to (4,)"),
    (lambda: gc.broadcast_to(P(2, 3), (3,)), gc.ShapeError, "broadcast_to", "cannot broadcast"),
    (lambda: gc.expand_dims(P(2, 3), 5), gc.ShapeError, "expand_dims", "out of range"),
    (lambda: gc.squeeze(P(1, 3), 1), gc.ShapeError, "squeeze", "axis 1 of size 3"),
    (lambda: gc.concatenate([P(2, 3), P(3, 3)], 1), gc.ShapeError, "concatenate", "except"),
    (lambda: gc.concatenate([P(2), P(2, 1)]), gc.ShapeError, "concatenate", "dimensions"),
    (lambda: gc.concatenate([P(), P()]), gc.ShapeError, "concatenate", "0-d"),
    (lambda: gc.concatenate([]), gc.ShapeError, "concatenate", "at least one"),
    (lambda: gc.concatenate([P(2)], axis=1), gc.ShapeError, "concatenate", "axis 1"),
    (lambda: gc.concatenate(P(2, 2)), TypeError, "concatenate", "list of tensors"),
    (lambda: gc.stack([P(2), P(3)]), gc.ShapeError, "stack", "one shape"),
    (lambda: gc.stack([P(2), P(2)], axis=3), gc.ShapeError, "stack", "out of range"),
    (lambda: gc.pad(P(), 1), gc.ShapeError, "pad", "0-d"),
    (lambda: gc.pad(P(3), (-1, 0)), gc.ShapeError, "pad", "negative"),
    (lambda: gc.pad(P(3, 2), ((1, 1), (1, 1), (1, 1))), gc.ShapeError, "pad", "does not fit"),
    (lambda: gc.pad(P(3), 1.5), TypeError, "pad", "ints"),
    (lambda: gc.pad(P(3), 1, mode="reflect"), ValueError, "pad", "only 'constant'"),
    (lambda: gc.pad(P(3), 1, constant_values=(1, 2)), ValueError, "pad", "scalar"),
    (lambda: P(2, 3)[1, 3], gc.ShapeError, "getitem", "index 3 is out of range for axis 1"),
    (lambda: P(2, 3)[-3], gc.ShapeError, "getitem", "index -3 is out of range for axis 0"),
    (lambda: P(2, 3)[0, 0, 0], gc.ShapeError, "getitem", "too many indices"),
    (lambda: P(2, 3)[..., 0, ...], gc.ShapeError, "getitem", "one Ellipsis"),
    (lambda: P(2, 3)[::0], gc.ShapeError, "getitem", "step cannot be zero"),
    (lambda: P(2, 3)[[0, 1]], TypeError, "getitem", "gc.take"),
    (lambda: P(2, 3)[P(2, dtype=i32)], TypeError, "getitem", "gc.take"),
    (lambda: P(2, 3)[True], TypeError, "getitem", "gc.take"),
    (lambda: P(2, 3)[0.5], TypeError, "getitem", "gc.take"),
    (lambda: P(2, 3)[1.0:], TypeError, "getitem", "slice bounds"),
    (lambda: gc.take(P(3), P(2, dtype=f32)), gc.DTypeError, "take", "int32 or int64"),
    (lambda: gc.take(P(3, 2), [0, 3], axis=0), gc.ShapeError, "take", "index 3"),
    (lambda: gc.take(P(3, 2), [-4], axis=0), gc.ShapeError, "take", "index -4"),
    (lambda: gc.take(P(3, 2), [0], axis=2), gc.ShapeError, "take", "out of range"),
    (lambda: gc.take(P(), [0], axis=0), gc.ShapeError, "take", "0-d"),
    (lambda: apply("slice", [P(3)], starts=(0,), stops=(4,), steps=(1,)), gc.ShapeError,
     "slice", "leaves [0, 3)"),
    (lambda: apply("slice_grad", [P(2)], starts=(0,), stops=(3,), steps=(1,), shape=(3,)),
     gc.ShapeError, "slice_grad", "does not fit"),
    (lambda: apply("take_grad", [P(3), P(2, dtype=i32)], axis=0, shape=(4,)),
     gc.ShapeError, "take_grad", "does not fit"),
]


@pytest.mark.parametrize("build, error, op, fragment", BAD,
                         ids=[f"{row[2]}-{i}" for i, row in enumerate(BAD)])
def test_bad_input(build, error, op, fragment):
    line = build.__code__.co_firstlineno
    with pytest.raises(error) as info:
        build()
    text = str(info.value)
    assert text.startswith(f"{op}("), text
    assert fragment in text
    assert re.search(rf"created at \S*test_ops_movement\.py:{line}\b", text), text


def test_interpreter_raises_on_out_of_range_fed_indices():
    x = gc.placeholder((3,), f32)
    i = gc.placeholder((1,), i32)
    with pytest.raises(IndexError):
        gc.interpret(gc.take(x, i), {x: np.zeros(3, f32), i: np.array([3], i32)})


def test_slice_attrs_are_canonical():
    x = gc.placeholder((6, 4), f32)
    assert x[4:0:-3].producer.attrs == dict(starts=(4, 0), stops=(-2, 4), steps=(-3, 1))
    assert x[::-1, 5:2].producer.attrs == dict(
        starts=(5, 0), stops=(-1, 0), steps=(-1, 1))
    assert x[...] is x and x[:, :] is x


def test_pad_value_takes_the_input_dtype():
    assert gc.pad(gc.placeholder((2,), i32), 1, constant_values=2.7).producer.attrs["value"] == 2
    assert gc.pad(gc.placeholder((2,), b), 1, constant_values=1).producer.attrs["value"] is True


# ---- gradients ----

def _slice_node(x):
    return slice_tensor(x, (3, 0), (0, 2), (-2, 1))


# Single-node ops, checked by the adjoint identity <vjp(g), x> == <g, f(x)> (all are linear).
ADJOINT = [
    ("reshape", lambda x: gc.reshape(x, (3, 4)), [arr(2, 6, dtype=f64)]),
    ("transpose", lambda x: gc.transpose(x, (1, 2, 0)), [arr(2, 3, 4, dtype=f64)]),
    ("broadcast_to", lambda x: gc.broadcast_to(x, (2, 3, 4)), [arr(3, 1, dtype=f64)]),
    ("concatenate", lambda x, y: gc.concatenate([x, y], 1), [arr(2, 3, dtype=f64),
                                                              arr(2, 2, dtype=f64)]),
    ("pad", lambda x: gc.pad(x, ((1, 0), (2, 3))), [arr(2, 3, dtype=f64)]),
    ("slice", _slice_node, [arr(5, 3, dtype=f64)]),
    ("slice_grad", lambda g: apply("slice_grad", [g], starts=(3,), stops=(-1,), steps=(-2,),
                                   shape=(5,)), [arr(2, dtype=f64)]),
    ("take", lambda x: gc.take(x, IDX, axis=0), [arr(3, 2, dtype=f64)]),
    ("take_grad", lambda g: apply("take_grad", [g, gc.constant(IDX)], axis=1, shape=(2, 3)),
     [arr(2, 3, 2, dtype=f64)]),
]


@pytest.mark.parametrize("build, inputs", [r[1:] for r in ADJOINT], ids=[r[0] for r in ADJOINT])
def test_vjp_is_the_adjoint(build, inputs):
    tensors = [gc.placeholder(a.shape, a.dtype) for a in inputs]
    y = build(*tensors)
    node = y.producer
    g = gc.placeholder(y.shape, f64)
    raw = get_op(node.op).vjp(g, y, *node.inputs, **node.attrs)
    cotangents = [c for c, x in zip(raw, node.inputs) if any(x is t for t in tensors)]
    assert [c.shape for c in cotangents] == [t.shape for t in tensors]
    g_value = arr(*y.shape, dtype=f64)
    feed = {**dict(zip(tensors, inputs)), g: g_value}
    values = gc.interpret([y, *cotangents], feed)
    lhs = sum(np.vdot(c, a) for c, a in zip(values[1:], inputs))
    np.testing.assert_allclose(lhs, np.vdot(g_value, values[0]), rtol=1e-12)


GRADS = [
    ("reshape", lambda x: gc.reshape(x, (-1,)) * 2.0, [arr(2, 3)]),
    ("transpose", lambda x: gc.transpose(x) ** 2, [arr(2, 3, 5)]),
    ("broadcast_to", lambda x: gc.broadcast_to(x, (4, 3, 2)) ** 2, [arr(3, 1)]),
    ("expand_squeeze", lambda x: gc.squeeze(gc.expand_dims(x, (0, 2))) ** 3, [arr(2, 3)]),
    ("concatenate", lambda x, y: gc.concatenate([x, y, x], axis=-1) ** 2, [arr(2, 1), arr(2, 3)]),
    ("stack", lambda x, y: gc.stack([x * y, y], axis=1), [arr(3), arr(3)]),
    ("pad", lambda x: gc.pad(x ** 2, ((1, 2), (0, 1)), constant_values=3.0), [arr(2, 3)]),
    ("getitem_unit", lambda x: x[1:, None, ..., 2] ** 2, [arr(3, 2, 4)]),
    ("getitem_steps", lambda x: x[::-2, 1::2] ** 2, [arr(5, 4)]),
    ("take", lambda x: gc.take(x, IDX, axis=1) ** 2, [arr(2, 3)]),
    ("take_flat", lambda x: gc.take(x ** 2, [5, 5, 0]), [arr(2, 3)]),
]


@pytest.mark.parametrize("fn, inputs", [r[1:] for r in GRADS], ids=[r[0] for r in GRADS])
def test_gradcheck(fn, inputs):
    error, where = gc.gradcheck(fn, inputs)
    assert error < 1e-6, where


def _grad_of(f):
    """x -> d/dx sum(f(x)**3): its gradient runs through the vjp of f's gradient ops."""
    return lambda x: gc.grad(gc.sum(f(x) ** 3), x)


@pytest.mark.parametrize("f", [lambda x: x[::-2, 1:], lambda x: x[1:, :1],
                               lambda x: gc.take(x, IDX, axis=0)],
                         ids=["slice_grad", "pad", "take_grad"])
def test_second_order(f):
    error, where = gc.gradcheck(_grad_of(f), [arr(3, 2)])
    assert error < 1e-6, where


def test_indices_get_no_gradient():
    x = gc.placeholder((3,), f64)
    i = gc.placeholder((2,), i32)
    y = gc.take(x, i)
    assert get_op("take").vjp(gc.placeholder((2,), f64), y, x, i, axis=0)[1] is None


def test_records_are_complete():
    for name in ["reshape", "transpose", "broadcast_to", "concatenate", "pad", "slice",
                 "slice_grad", "take", "take_grad"]:
        record = get_op(name)
        assert record.kind in ("movement", "opaque") and record.differentiable
        assert lowering_of(name).kind in ("inline", "loop") and record.doc   # how it lowers
