"""graphc.inspection's checking modes: GRAPHC_CHECK_NUMERICS names the op that made a NaN,
GRAPHC_VALIDATE the op that diverges from the reference interpreter, both with the user's
line; error context.

Device tests call the hooks Function calls (`on_function_called`) with the flags set.
"""
import re
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.inspection import context, debug
from graphc.builder import apply
from graphc.ops import REGISTRY, OpDef, register
from graphc.ops.elementwise import unary_infer


def _line_of(marker: str) -> int:
    """The line of this file holding `marker` (a comment), for asserting sites."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line and "_line_of" not in line)


def _call(fn, *feeds):
    """What Function.__call__ does once the debug hook is wired in."""
    arrays = fn._check_feeds(feeds)
    results = debug.on_function_called(fn, arrays)
    if results is None:
        results = fn.executable.run(arrays)
    fn.calls += 1
    return results


# ---- NaN / Inf ----

@pytest.mark.opencl
def test_check_numerics_names_the_log_of_a_negative_and_its_line(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    x = gc.placeholder((2, 3), gc.float32, name="x")
    w = gc.variable(np.ones((3, 3), np.float32), name="w")
    h = gc.log(x @ w - 5.0)                                        # plants a NaN
    loss = gc.sum(gc.exp(h) * 2.0)
    step = gc.function([x], [loss], updates=[(w, w - 0.1 * gc.grad(loss, w))],
                       device=cl_device, name="nan_step")
    with pytest.raises(gc.NumericsError) as info:
        _call(step, np.ones((2, 3), np.float32))
    text = str(info.value)
    line = _line_of("# plants a NaN")
    assert re.search(r"kernel #\d+ \w+ wrote NaN into \w+:f32\[\d+(,\d+)*\] \(buffer \w+\)",
                     text), text
    assert f"the first op to produce NaN: log (at tests/test_debug.py:{line})" in text
    assert re.search(r">>> #\d+: \w+:f32\[2,3\] = log \w+", text)
    assert np.array_equal(w.get_value(), np.ones((3, 3), np.float32)), "variables restored"
    assert step.calls == 0


@pytest.mark.opencl
def test_check_numerics_passes_finite_steps_through(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    x = gc.placeholder((4,), gc.float32, name="x")
    fn = gc.function([x], [gc.log(x) * 2.0], device=cl_device)
    (out,) = _call(fn, np.array([1, 2, 3, 4], np.float32))
    np.testing.assert_allclose(out, np.log([1, 2, 3, 4]) * 2, rtol=1e-6)


@pytest.mark.opencl
def test_check_numerics_blames_a_fed_nan(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    x = gc.placeholder((3,), gc.float32, name="x")
    fn = gc.function([x], [x * 2.0], device=cl_device)
    with pytest.raises(gc.NumericsError, match=r"placeholder 'x' \(f32\[3\]\) holds NaN at "
                                               r"index \(1,\) before any kernel ran"):
        _call(fn, np.array([0, np.nan, 1], np.float32))


@pytest.mark.opencl
def test_an_inf_is_reported_as_inf(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    x = gc.placeholder((3,), gc.float32, name="x")
    fn = gc.function([x], [gc.sum(1.0 / x)], device=cl_device)       # divides by zero
    with pytest.raises(gc.NumericsError) as info:
        _call(fn, np.array([1, 0, 2], np.float32))
    line = _line_of("# divides by zero")
    assert "wrote Inf" in str(info.value)
    assert f"the first op to produce Inf: divide (at tests/test_debug.py:{line})" in str(info.value)


# ---- validation ----

@pytest.fixture
def wrong_op():
    """A test-only elementwise op whose OpenCL template adds 1 where the reference is x."""
    register(OpDef("test_wrong_identity", "elementwise", 1, (), unary_infer("float"),
                   lambda x: x.copy(), lambda g, y, x: [g], {"opencl": "({0} + 1)"},
                   "Test only: wrong on purpose."))
    try:
        yield "test_wrong_identity"
    finally:
        del REGISTRY["test_wrong_identity"]


@pytest.mark.opencl
def test_validate_names_the_op_whose_kernel_diverges(cl_device, monkeypatch, wrong_op):
    monkeypatch.setenv("GRAPHC_VALIDATE", "1")
    x = gc.placeholder((4, 8), gc.float32, name="x")
    hidden = gc.tanh(x) * 0.5
    y = gc.sum(apply(wrong_op, [hidden]) * 3.0, axis=1)             # the wrong kernel
    fn = gc.function([x], [y, hidden], device=cl_device, name="validated")
    with pytest.raises(gc.ValidationError) as info:
        _call(fn, np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8))
    text = str(info.value)
    line = _line_of("# the wrong kernel")
    assert re.search(r"kernel #\d+ \w+ stored \w+:f32\[4\] \(buffer \w+\), which differs from "
                     r"the reference interpreter: at index \(\d+,\) the device has", text), text
    assert (f"culprit: op test_wrong_identity (at tests/test_debug.py:{line}) differs when run "
            f"alone on the device") in text
    assert re.search(r">>> #\d+: \w+:f32\[4,8\] = test_wrong_identity \w+", text)


@pytest.mark.opencl
def test_validate_accepts_a_correct_training_step(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_VALIDATE", "1")
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    rng = np.random.default_rng(0)
    x = gc.placeholder((8, 6), gc.float32, name="x")
    y = gc.placeholder((8,), gc.int32, name="y")
    W = gc.variable(rng.standard_normal((6, 4)).astype(np.float32), name="W")
    b = gc.variable(np.zeros(4, np.float32), name="b")
    keep = gc.random.bernoulli((8, 4), 0.8)
    logits = gc.relu(x @ W + b) * gc.cast(keep, gc.float32)
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    gW, gb = gc.grad(loss, [W, b])
    step = gc.function([x, y], [loss], updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)],
                       device=cl_device)
    xb, yb = rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 4, 8, np.int32)
    W0 = W.get_value()
    checked = [float(_call(step, xb, yb)[0]) for _ in range(3)]
    monkeypatch.delenv("GRAPHC_VALIDATE")
    monkeypatch.delenv("GRAPHC_CHECK_NUMERICS")
    W.set_value(W0)
    b.set_value(np.zeros(4, np.float32))
    step.calls = 0
    plain = [float(step(xb, yb)[0]) for _ in range(3)]
    np.testing.assert_allclose(checked, plain, rtol=1e-6)
    assert checked[2] < checked[0]


# ---- hooks and context ----

@pytest.mark.opencl
def test_hooks_do_nothing_without_flags(cl_device, monkeypatch):
    for name in ("GRAPHC_VALIDATE", "GRAPHC_CHECK_NUMERICS", "GRAPHC_DUMP"):
        monkeypatch.delenv(name, raising=False)
    x = gc.placeholder((3,), gc.float32, name="x")
    fn = gc.function([x], [x + 1.0], device=cl_device)
    debug.on_function_compiled(fn)
    assert fn in debug.compiled_functions()
    assert debug.on_function_called(fn, fn._check_feeds((np.zeros(3, np.float32),))) is None


def test_equation_context_shows_the_equation_its_line_and_neighbours():
    x = gc.placeholder((3,), gc.float32, name="x")
    a = gc.exp(x)
    b = gc.sqrt(a)                                                  # the equation
    c = gc.log(b) + 1.0
    graph = gc.Graph.from_outputs([c])
    text = context.equation_context(graph, b, radius=1)
    line = _line_of("# the equation")
    assert text.splitlines() == [
        "  in equation #2: b:f32[3] = sqrt a",
        f"  created at tests/test_debug.py:{line}",
        "  context:",
        "      #1: a:f32[3] = exp x",
        "  >>> #2: b:f32[3] = sqrt a",
        "      #3: c:f32[3] = log b"]
    assert context.equation_context(graph, x) == "  (a graph input: no equation)"


@pytest.mark.opencl
def test_kernel_context_lists_what_a_kernel_computes(cl_device):
    x = gc.placeholder((3,), gc.float32, name="x")
    fn = gc.function([x], [gc.exp(x) * 2.0], device=cl_device)
    (kernel,) = fn.compiled.kernels
    text = context.kernel_context(fn.compiled, kernel.name)
    assert text.splitlines()[0] == f"  kernel #0 {kernel.name} computes:"
    assert re.search(r"^    a:f32\[3\] = exp x +# tests/test_debug\.py:\d+$", text, re.M)
    assert "no kernel named" in context.kernel_context(fn.compiled, "E_nope")
