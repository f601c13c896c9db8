"""`==` and `!=` on tensors are elementwise (as in numpy, JAX and TF2); tensors stay hashable
by identity; a tensor has no truth value; a Python bool where a tensor is expected is refused."""
import re

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(11)


def _logits_and_labels():
    logits = RNG.normal(size=(64, 10)).astype(np.float32)
    labels = RNG.integers(0, 10, 64).astype(np.int32)
    labels[:20] = logits[:20].argmax(1)             # some right, some wrong
    return logits, labels


def test_argmax_equals_labels_is_an_elementwise_bool_tensor():
    """The issue's accuracy: it was the Python value False, so every accuracy read 0.0."""
    x = gc.placeholder((64, 10), gc.float32, name="logits")
    y = gc.placeholder((64,), gc.int32, name="y")
    hit = gc.argmax(x, 1) == y
    assert isinstance(hit, gc.Tensor) and hit.op == "equal" and hit.dtype == np.bool_
    assert hit.shape == (64,)
    logits, labels = _logits_and_labels()
    accuracy = gc.mean(gc.cast(hit, gc.float32))
    got = gc.interpret(accuracy, {x: logits, y: labels})
    want = np.mean(logits.argmax(1) == labels)
    assert want > 0.3
    np.testing.assert_allclose(got, want, rtol=1e-6)
    miss = gc.argmax(x, 1) != y
    assert miss.op == "not_equal"
    np.testing.assert_array_equal(gc.interpret(miss, {x: logits, y: labels}),
                                  logits.argmax(1) != labels)


def test_accuracy_on_the_device_matches_numpy(cl_device):
    x = gc.placeholder((64, 10), gc.float32, name="logits")
    y = gc.placeholder((64,), gc.int32, name="y")
    accuracy = gc.mean(gc.argmax(x, 1) == y)            # a bool mean is a float32 fraction
    wrong = gc.sum(gc.cast(gc.argmax(x, 1) != y, gc.int32))
    fn = gc.function([x, y], [accuracy, wrong], device=cl_device)
    logits, labels = _logits_and_labels()
    got_accuracy, got_wrong = fn(logits, labels)
    np.testing.assert_allclose(got_accuracy, np.mean(logits.argmax(1) == labels), rtol=1e-6)
    assert got_wrong == np.sum(logits.argmax(1) != labels)


@pytest.mark.parametrize("other, want", [
    (2.0, lambda a: a == 2.0),
    (np.float32(1.5), lambda a: a == np.float32(1.5)),
    (np.array([1.5, 2.0, 0.0], np.float32), lambda a: a == np.array([1.5, 2.0, 0.0])),
    ([1.5, 0.5, 2.0], lambda a: a == np.array([1.5, 0.5, 2.0])),
], ids=["python-float", "numpy-scalar", "array", "list"])
def test_eq_and_ne_with_constants_both_ways(other, want):
    a = gc.placeholder((3,), gc.float32, name="a")
    value = np.array([1.5, 2.0, 2.0], np.float32)
    for expr in (a == other, other == a):
        assert isinstance(expr, gc.Tensor) and expr.op == "equal", expr
        np.testing.assert_array_equal(gc.interpret(expr, {a: value}), want(value))
    for expr in (a != other, other != a):
        assert isinstance(expr, gc.Tensor) and expr.op == "not_equal", expr
        np.testing.assert_array_equal(gc.interpret(expr, {a: value}), ~want(value))


def test_tensors_stay_hashable_by_identity():
    a = gc.placeholder((3,), gc.float32, name="a")
    b = gc.placeholder((3,), gc.float32, name="a")      # same name and type: another tensor
    table = {a: 1, b: 2}
    assert table[a] == 1 and table[b] == 2 and len({a, b, a}) == 2
    assert hash(a) != hash(b)
    assert (a is a) and (a is not b)


def test_eq_with_unrelated_objects_is_identity():
    """None, strings and arbitrary objects are not operands: Python's identity answer."""
    a = gc.placeholder((3,), gc.float32, name="a")
    assert (a == None) is False and (a != None) is True      # noqa: E711
    assert (a == "a") is False and (a != object()) is True


def test_a_tensor_has_no_truth_value():
    a = gc.placeholder((3,), gc.float32, name="a")
    b = gc.placeholder((3,), gc.float32, name="b")
    for attempt in (lambda: bool(a), lambda: bool(a == b), lambda: a in [b],
                    lambda: [b].index(a), lambda: 1 if a > 0 else 0):
        with pytest.raises(gc.TruthValueError) as info:
            attempt()
        text = str(info.value)
        assert isinstance(info.value, gc.GraphcError) and isinstance(info.value, TypeError)
        assert text.startswith("the truth value of a symbolic tensor"), text
        assert "unknown until the function runs" in text and "gc.where" in text, text
    assert a in [a]                       # the identity shortcut of `in` still holds


@pytest.mark.parametrize("build", [
    lambda v: gc.mean(v), lambda v: gc.sum(v), lambda v: gc.cast(v, gc.float32),
    lambda v: gc.exp(v), lambda v: gc.logical_not(v), lambda v: gc.argmax(v),
    lambda v: gc.where(v, 1.0, 0.0), lambda v: gc.reshape(v, (1,)),
    lambda v: gc.function([], [v]),
], ids=["mean", "sum", "cast", "exp", "logical_not", "argmax", "where", "reshape", "function"])
@pytest.mark.parametrize("flag", [False, np.True_], ids=["python", "numpy"])
def test_a_bool_scalar_where_a_tensor_is_expected_is_refused(build, flag):
    """`gc.mean(gc.cast(p == y, ...))` with p, y numpy values made a constant False: 0.0."""
    line = build.__code__.co_firstlineno          # the user's line: the lambda's
    with pytest.raises(gc.DTypeError) as info:
        build(flag)
    text = str(info.value)
    kind = "Python bool" if isinstance(flag, bool) else "numpy bool"
    assert f"got the {kind} {bool(flag)} where a tensor is expected" in text, text
    assert "comparison Python evaluated" in text and "gc.equal" in text, text
    assert f"gc.constant({bool(flag)})" in text, text
    assert re.search(rf"test_equality\.py:{line}\b", text), text


def test_bools_beside_a_tensor_and_explicit_bool_constants_are_kept():
    """numpy's rules: a Python bool next to a tensor is a weak scalar; gc.constant(True)
    and a bool array say what they mean."""
    x = gc.placeholder((3,), gc.float32, name="x")
    m = gc.placeholder((3,), gc.bool, name="m")
    xv, mv = np.array([1, -2, 3], np.float32), np.array([True, False, True])
    feeds = {x: xv, m: mv}
    np.testing.assert_array_equal(gc.interpret(x + True, feeds), xv + True)
    np.testing.assert_array_equal(gc.interpret(gc.logical_and(m, True), feeds), mv)
    np.testing.assert_array_equal(gc.interpret(gc.where(m, x, False), feeds), np.where(mv, xv, 0))
    both = gc.where(m, True, False)
    assert both.dtype == np.bool_
    np.testing.assert_array_equal(gc.interpret(both, feeds), mv)
    assert gc.where(m, 1, 0).dtype == np.int32 and gc.where(m, 1.0, 0).dtype == np.float32
    assert gc.constant(True).dtype == np.bool_
    np.testing.assert_array_equal(gc.interpret(gc.mean(gc.constant(True))), 1.0)
    np.testing.assert_array_equal(gc.interpret(gc.sum(np.array([True, True]))), 2)
