"""Scalar dtypes follow NEP 50 (numpy 2) and JAX: a Python bool/int/float is weak (it takes
the dtype of the tensors beside it), a numpy scalar is strong (it keeps its dtype and promotes
like an array of it). Integers never widen floats (graphc's lattice), and a float32 model
built by the library stays float32 throughout."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir import Graph


@pytest.mark.parametrize("value, dtype", [
    (np.float64(1) / 3, np.float64), (np.float32(0.5), np.float32), (np.float16(2), np.float16),
    (np.int64(3), np.int64), (np.int32(3), np.int32), (np.bool_(True), np.bool_),
    (1 / 3, np.float32), (3, np.int32), (True, np.bool_), ([0.5, 1.5], np.float32),
    ([1, 2], np.int32), (np.array([0.5]), np.float64),
], ids=lambda v: type(v).__name__ if not isinstance(v, type) else v.__name__)
def test_a_constant_keeps_a_numpy_scalars_dtype_and_python_scalars_take_defaults(value, dtype):
    c = gc.constant(value)
    assert c.dtype == np.dtype(dtype), (value, c.dtype)
    np.testing.assert_array_equal(gc.interpret(c), np.asarray(value, dtype))


def test_float64_constant_from_a_numpy_scalar_is_exact():
    """The issue's case: gc.constant(np.float64(1) / 3) was float32 (error 1e-8)."""
    third = np.float64(1) / 3
    assert gc.interpret(gc.constant(third)) == third
    x = gc.placeholder((3,), gc.float64, name="x")
    value = np.array([3.0, 1e8, -7.0])
    got = gc.interpret(x * gc.constant(third), {x: value})
    np.testing.assert_array_equal(got, value * third)
    v = gc.variable(np.float64(0.1), name="v")
    assert v.dtype == np.float64 and gc.interpret(v) == np.float64(0.1)


# (tensor dtype, other operand, result dtype); numpy 2 agrees except where marked
PROMOTIONS = [
    ("float32", np.float64(2), "float64"),
    ("float32", 2.0, "float32"),
    ("float32", 2, "float32"),
    ("float16", np.float32(2), "float32"),
    ("float16", 2.0, "float16"),
    ("float64", np.float32(2), "float64"),
    ("int32", np.int64(1), "int64"),
    ("int32", 1, "int32"),
    ("int32", 2.5, "float32"),        # numpy: float64 (a weak float next to ints is f64)
    ("float32", np.int64(3), "float32"),   # numpy: float64; graphc: ints never widen floats
    ("bool", np.int32(1), "int32"),
]


@pytest.mark.parametrize("dtype, other, want", PROMOTIONS,
                         ids=[f"{d}-{type(o).__name__}" for d, o, _ in PROMOTIONS])
def test_binary_operators_promote_numpy_scalars_as_strong_and_python_ones_as_weak(
        dtype, other, want):
    x = gc.placeholder((3,), dtype, name="x")
    value = np.array([1, 0, 1]).astype(dtype)
    for expr in (x + other, other + x, gc.maximum(x, other)):
        assert expr.dtype == np.dtype(want), (expr, other)
    np.testing.assert_allclose(gc.interpret(x + other, {x: value}),
                               value.astype(want) + np.asarray(other).astype(want))


def test_float64_scalar_keeps_precision_through_an_operator():
    x = gc.placeholder((2,), gc.float32, name="x")
    tiny = np.float64(1e-12)
    got = gc.interpret(x + tiny, {x: np.array([1, 2], np.float32)})
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array([1, 2], np.float64) + tiny)


def _values(outputs) -> list:
    return Graph.from_outputs(outputs).values()


def _model(layers, shape, dtype="float32"):
    model = gc.nn.Sequential([gc.nn.Input(shape, dtype=dtype)] + layers)
    return model


SOFTMAX = {"activation": "softmax"}     # the probability loss below expects probabilities
MODELS = {
    "dense": (lambda: [gc.nn.Dense(8, activation="relu"), gc.nn.Dropout(0.25),
                       gc.nn.BatchNormalization(), gc.nn.Dense(3, **SOFTMAX)], (5,), "float32"),
    "conv": (lambda: [gc.nn.Conv2D(4, 3, padding="same", activation="relu"), gc.nn.MaxPool2D(2),
                      gc.nn.Flatten(), gc.nn.Dense(3, **SOFTMAX)], (1, 6, 6), "float32"),
    "lstm": (lambda: [gc.nn.Embedding(11, 4), gc.nn.LSTM(5), gc.nn.Dense(3, **SOFTMAX)], (7,),
             "int32"),
}
OPTIMIZERS = ["sgd", "adam", "rmsprop", "adagrad",
              lambda: gc.optim.SGD(0.1, momentum=0.9, nesterov=True),
              lambda: gc.optim.AdamW(gc.optim.schedules.CosineDecay(0.01, 100))]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o if isinstance(o, str) else "")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_models_and_optimizers_build_no_float64_value(name, optimizer):
    """Audit of the library's own scalars (initializers, optimizers, losses, metrics): a
    numpy float64 scalar in any of them would now promote the whole step to float64."""
    build, shape, dtype = MODELS[name]
    model = _model(build(), shape, dtype)
    model.compile(optimizer if isinstance(optimizer, str) else optimizer(),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  device="interpret")
    step = model.compiled_steps().train(4, ((), np.dtype(np.int32)))
    values = _values(step.outputs + [v for _, v in step.updates])
    wide = [v for v in values if v.dtype == np.float64]
    assert not wide, [(v, v.site) for v in wide[:5]]
    assert any(v.dtype == np.float32 for v in values)
