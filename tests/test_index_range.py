"""Indexing ops and out-of-range indices: the interpreter, a device and the checking modes agree.

take follows numpy.take: indices in [-n, n), negatives counting from the end (on devices
too). Sparse cross-entropy labels are class numbers in [0, classes). Out of range, the
interpreter and GRAPHC_CHECK_NUMERICS / GRAPHC_VALIDATE raise IndexRangeError naming the op,
the value, its position and the user's line; a device without checking has no error channel
and gives a defined answer that reads nothing outside a buffer (take clamps, take's gradient
drops the index, a cross-entropy row is 0). Taking from an empty axis is a build-time error.
"""
import re

import numpy as np
import pytest

import graphc as gc

N = 5                               # the size of every indexed axis
RNG = np.random.default_rng(3)
INDEX_CASES = {                     # name: (index values, are they all in take's range)
    "in-range": [0, 4, 2, 1],
    "negative": [-1, -5, 0, 3],     # in range for take (numpy wraps them), not as labels
    "too-large": [0, 5, 1, 2],
    "far-out": [2, -6, 1, 100],
}


def _wrap_clamp(indices):
    """The device's answer to any take index: wrap a negative once, then clamp to [0, N)."""
    return np.clip(np.where(indices < 0, indices + N, indices), 0, N - 1)


def _numpy_row_grad(indices, g):
    """d(sum(take(W, i) * g))/dW with out-of-range indices dropped (the device's rule)."""
    out = np.zeros((N, g.shape[-1]), g.dtype)
    wrapped = np.where(indices < 0, indices + N, indices).reshape(-1)
    for row, index in zip(g.reshape(-1, g.shape[-1]), wrapped):
        if 0 <= index < N:
            out[index] += row
    return out


def _numpy_sparse_xent(x, labels):
    """Loss rows and their gradient by x; an out-of-range label's row is 0 (the device)."""
    z = x - x.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    valid = (labels >= 0) & (labels < N)
    hot = (labels[:, None] == np.arange(N)).astype(x.dtype)
    loss = np.where(valid, -(hot * log_p).sum(1), 0)
    return loss, valid[:, None] * np.exp(log_p) - hot


class Case:
    """One indexing graph: its placeholders, the op that reads the index, numpy's answer."""

    def __init__(self, name, op, build, feeds, expect, valid):
        self.name, self.op, self.build, self.feeds, self.expect = name, op, build, feeds, expect
        self.valid = valid          # values -> bool array: in the op's range


def _take_rows():
    x = gc.placeholder((N, 3), gc.float32, name="x")
    i = gc.placeholder((4,), gc.int32, name="i")
    out = gc.take(x, i, axis=0)
    value = RNG.normal(size=(N, 3)).astype(np.float32)
    return [x, i], [out], lambda idx: [value, idx], lambda idx: [value[_wrap_clamp(idx)]]


def _take_columns_int64():
    x = gc.placeholder((2, N), gc.float64, name="x")
    i = gc.placeholder((2, 2), gc.int64, name="i")
    out = gc.take(x, i, axis=1) * 2.0
    value = RNG.normal(size=(2, N))
    return [x, i], [out], lambda idx: [value, idx.astype(np.int64).reshape(2, 2)], \
        lambda idx: [2 * value[:, _wrap_clamp(idx).reshape(2, 2)]]


def _embedding():
    """The Embedding layer's gather, fed ids computed in the graph (an inlined operand)."""
    layer = gc.nn.Embedding(N, 3)
    ids = gc.placeholder((2, 2), gc.int32, name="ids")
    out = layer(ids - 1)
    table = layer.embeddings.get_value()
    return [ids], [out], lambda idx: [(idx + 1).reshape(2, 2)], \
        lambda idx: [table[_wrap_clamp(idx).reshape(2, 2)]]


def _embedding_gradient():
    """Only take's gradient (a scatter-add) reads the ids: the forward gather is not needed."""
    w = gc.variable(RNG.normal(size=(N, 3)).astype(np.float32), name="w")
    ids = gc.placeholder((4,), gc.int32, name="ids")
    g = gc.placeholder((4, 3), gc.float32, name="g")
    out = gc.grad(gc.sum(gc.take(w, ids, axis=0) * g), w)
    g_value = RNG.normal(size=(4, 3)).astype(np.float32)
    return [ids, g], [out], lambda idx: [idx, g_value], \
        lambda idx: [_numpy_row_grad(idx, g_value)]


def _labels():
    x = gc.placeholder((4, N), gc.float32, name="logits")
    y = gc.placeholder((4,), gc.int32, name="y")
    loss = gc.losses.sparse_categorical_crossentropy(y, x, from_logits=True)
    dx = gc.grad(gc.sum(loss), x)
    value = RNG.normal(size=(4, N)).astype(np.float32)
    return [x, y], [loss, dx], lambda idx: [value, idx], \
        lambda idx: list(_numpy_sparse_xent(value, idx))


TAKE_RANGE = lambda v: (v >= -N) & (v < N)          # noqa: E731
LABEL_RANGE = lambda v: (v >= 0) & (v < N)          # noqa: E731
GRAPHS = {   # name: (builder, op that reads the index, its role, range)
    "take-rows": (_take_rows, "take", "index", "indices 'i'", TAKE_RANGE),
    "take-columns-int64": (_take_columns_int64, "take", "index", "indices 'i'", TAKE_RANGE),
    "embedding": (_embedding, "take", "index", "indices", TAKE_RANGE),
    "embedding-gradient": (_embedding_gradient, "take_grad", "index", "indices 'ids'",
                           TAKE_RANGE),
    "labels": (_labels, "softmax_cross_entropy", "label", "labels 'y'", LABEL_RANGE),
}


def _built(name):
    builder, op, role, operand, in_range = GRAPHS[name]
    inputs, outputs, feeds, expect = builder()
    return inputs, outputs, feeds, expect, op, role, operand, in_range


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_interpreter_computes_in_range_indices_and_names_out_of_range_ones(graph, case):
    inputs, outputs, feeds, expect, op, role, operand, in_range = _built(graph)
    values = np.array(INDEX_CASES[case], np.int32)
    feed = dict(zip(inputs, feeds(values)))
    if in_range(values).all():
        for got, want in zip(gc.interpret(outputs, feed), expect(values)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        return
    with pytest.raises(gc.IndexRangeError) as info:
        gc.interpret(outputs, feed)
    assert isinstance(info.value, IndexError)
    text = str(info.value)
    assert text.startswith(f"{op}: {role} "), text
    _assert_position(text, graph, values, in_range, operand)


def _assert_position(text, graph, values, in_range, operand):
    bad = ~in_range(values)
    where = int(np.argmax(bad))
    shape = (2, 2) if graph in ("take-columns-int64", "embedding") else (4,)
    position = tuple(int(i) for i in np.unravel_index(where, shape))
    assert f" {values[where]} at position {position} of {operand} is outside [" in text, text
    assert re.search(r"created at \S*test_index_range\.py:\d+", text), text


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_device_checking_modes_and_interpreter_agree(graph, cl_device, monkeypatch):
    """One compiled function per graph, called with every case: without checking it
    gives numpy's answer in range and the defined safe answer out of it; with either
    checking mode it agrees in range and raises out of it, naming the same index."""
    inputs, outputs, feeds, expect, op, role, operand, in_range = _built(graph)
    fn = gc.function(inputs, outputs, device=cl_device)
    for case, raw in sorted(INDEX_CASES.items()):
        values = np.array(raw, np.int32)
        plain = fn(*feeds(values))
        for got, want in zip(plain, expect(values)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=case)
        for mode in ("GRAPHC_CHECK_NUMERICS", "GRAPHC_VALIDATE"):
            monkeypatch.setenv(mode, "1")
            try:
                if in_range(values).all():
                    for got, want in zip(fn(*feeds(values)), plain):
                        np.testing.assert_array_equal(got, want)
                    continue
                with pytest.raises(gc.IndexRangeError) as info:
                    fn(*feeds(values))
                text = str(info.value)
                assert text.startswith(f"{mode}: kernel #"), text
                assert f"read an index out of range: {op}: {role} " in text, text
                _assert_position(text, graph, values, in_range, operand)
            finally:
                monkeypatch.delenv(mode)


@pytest.mark.parametrize("build, op", [
    (lambda e, i: gc.take(e, i, axis=0), "take"),
    (lambda e, i: gc.take(e, i), "take"),
    (lambda e, i: gc.take(gc.transpose(e), i, axis=1), "take"),
], ids=["axis-0", "flattened", "axis-1"])
def test_taking_fed_indices_from_an_empty_axis_is_a_shape_error(build, op):
    """The issue's case: a (0, 3) table with fed indices returned uninitialised memory."""
    e = gc.placeholder((0, 3), gc.float32, name="e")
    i = gc.placeholder((2,), gc.int32, name="i")
    line = build.__code__.co_firstlineno
    with pytest.raises(gc.ShapeError) as info:
        build(e, i)
    text = str(info.value)
    assert text.startswith(f"{op}(") and "from axis" in text and "of size 0" in text, text
    assert "an empty axis has no element to read" in text, text
    assert re.search(rf"created at \S*test_index_range\.py:{line}\b", text), text


def test_taking_no_index_from_an_empty_axis_is_empty(cl_device):
    e = gc.placeholder((0, 3), gc.float32, name="e")
    i = gc.placeholder((0,), gc.int32, name="i")
    out = gc.take(e, i, axis=0) + 1.0
    assert out.shape == (0, 3)
    feeds = [np.zeros((0, 3), np.float32), np.zeros(0, np.int32)]
    assert gc.interpret(out, dict(zip([e, i], feeds))).shape == (0, 3)
    assert gc.function([e, i], [out], device=cl_device)(*feeds)[0].shape == (0, 3)


def test_an_empty_embedding_table_is_a_shape_error():
    with pytest.raises(gc.ShapeError, match="of size 0: an empty axis"):
        gc.nn.Embedding(0, 4)(gc.placeholder((3,), gc.int32, name="ids"))
