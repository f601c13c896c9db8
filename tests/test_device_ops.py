"""Every op, at every dtype the device supports, matches the interpreter on the device.

The table lives in device_cases.py; test_oclgrind.py and test_rusticl.py run this file
again on other OpenCL implementations (GRAPHC_DEVICE) in a subprocess.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import graphc as gc
from device_cases import ALL, BOOL, CASES, F64, TOLERANCE, GraphBuilder
from graphc.codegen.fallbacks import FALLBACKS   # ops decomposed on Vulkan
from graphc.ir import TensorType

PARAMS = [pytest.param(c, d, id=i) for c in CASES for d, i in zip(c.dtypes, c.ids())]

# Oclgrind's uninitialized-value check keeps a freed buffer's shadow size for the next buffer
# that reuses its id, and then reports reads past it; under Oclgrind no function is freed.
KEEP_ALIVE: list = []


def supported_dtypes(device) -> tuple:
    """The dtypes `device` computes in: all but double where cl_khr_fp64 is missing (float16
    is stored as half and computed in float on every device, codegen/ctext.py)."""
    return tuple(d for d in ALL if d != F64 or device.fp64)


def assert_matches(got, want, case, label: str) -> None:
    """Floats within the dtype's tolerance (bit for bit when the case is exact), others equal."""
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{label}: device gave {got.dtype}{got.shape}, the interpreter {want.dtype}{want.shape}"
    if want.dtype.kind == "f" and not case.exact:
        rtol, atol = TOLERANCE[want.dtype]
        np.testing.assert_allclose(got, want, rtol=rtol * case.tol, atol=atol * case.tol,
                                   err_msg=label)
    else:
        np.testing.assert_array_equal(got, want, err_msg=label)


def compile_case(case, dtype, device):
    """(function, builder, outputs) of one case at one dtype on `device`, or a skip."""
    supported = supported_dtypes(device)
    if dtype not in supported:
        pytest.skip(f"{device.name} does not support {dtype.name}")
    builder = GraphBuilder(dtype, supported, zlib.crc32(f"{case.name}-{dtype.name}".encode()))
    outputs = case.build(builder)
    try:
        fn = gc.function(list(builder.feeds), outputs, device=device, name=case.name)
    except gc.DTypeError as err:
        # GLSL computes exp, log, sin, ... in float32 only: such a case in float64 is a
        # clear compile-time DTypeError on Vulkan (test_vulkan.py checks its text)
        if device.backend == "vulkan" and dtype == F64 and "GLSL has" in str(err):
            pytest.skip(f"Vulkan: {str(err).splitlines()[0]}")
        raise
    if "oclgrind" in device.platform_name.lower():
        KEEP_ALIVE.append(fn)
    return fn, builder, outputs


@pytest.mark.opencl
@pytest.mark.parametrize("case,dtype", PARAMS)
def test_device_matches_interpreter(cl_device, case, dtype):
    fn, builder, outputs = compile_case(case, dtype, cl_device)
    compiled_ops = {node.op for node in fn.compiled.graph.nodes}
    expected = case.ops - set(FALLBACKS) if cl_device.backend == "vulkan" else case.ops
    assert expected <= compiled_ops, f"ops optimized away: {sorted(expected - compiled_ops)}"
    feeds = list(builder.feeds.values())
    previous = None
    for step in range(case.calls):
        got = fn(*feeds)
        want = gc.interpret(outputs, builder.feeds, step=step)
        for i, (a, b) in enumerate(zip(got, want)):
            assert_matches(a, b, case, f"{case.name} output {i} at step {step}")
        if previous is not None:            # a random stream moves on at every call
            assert not np.array_equal(got[0], previous[0]), f"step {step} repeated step 0"
        previous = got


# ---- the table covers the registry ----

def test_every_registered_op_has_a_device_case():
    covered = set().union(*(c.ops for c in CASES))
    assert not set(gc.REGISTRY) - covered, \
        f"ops without a device case: {sorted(set(gc.REGISTRY) - covered)}"


def _accepted_dtypes(opdef) -> set:
    """The dtypes an elementwise or reduction op accepts (its shape rule does not raise)."""
    accepted = set()
    for dtype in ALL:
        args = [TensorType((3,), dtype)] * (opdef.arity or 1)
        if opdef.name == "where":
            args[0] = TensorType((3,), BOOL)
        attrs = {"dtype": np.dtype(np.float32)} if opdef.name == "cast" else \
            {"axes": (0,), "keepdims": False} if opdef.kind == "reduction" else {}
        if opdef.name in ("argmax", "argmin"):
            attrs = {"axis": 0, "keepdims": False}
        try:
            opdef.infer(args, **attrs)
        except gc.GraphcError:
            continue
        accepted.add(dtype)
    return accepted


@pytest.mark.parametrize("op", sorted(name for name, o in gc.REGISTRY.items()
                                      if o.kind in ("elementwise", "reduction")))
def test_every_dtype_of_an_op_has_a_device_case(op):
    tested = {d for c in CASES if op in c.ops for d in c.dtypes}
    if op == "reduce_sum":
        tested.add(BOOL)           # gc.sum casts bool to int32 first (its case says so)
    missing = _accepted_dtypes(gc.REGISTRY[op]) - tested
    assert not missing, f"{op} accepts {sorted(d.name for d in missing)} but no case runs them"


@pytest.mark.opencl
def test_an_output_equal_to_an_input_is_copied(cl_device):
    """Outputs that are, or fold to, a leaf still get a kernel that writes them."""
    x = gc.placeholder((3,), name="x")
    v = gc.variable(np.array([4.0, 5.0, 6.0], np.float32), name="v")
    outputs = [x, x * 1.0, x + 0.0, gc.sum(x, axis=()), v, x * 2.0]
    fn = gc.function([x], outputs, device=cl_device)
    plan = fn.compiled.plan
    used = {arg.buffer for launch in plan.launches for arg in launch.args}
    # an unwritten buffer may still hold the feed's bytes on some drivers: check the plan too
    assert [o.buffer for o in plan.outputs if o.buffer not in used] == []
    feed = np.array([1.5, -2.5, 3.5], np.float32)
    for got, want in zip(fn(feed), gc.interpret(outputs, {x: feed})):
        np.testing.assert_array_equal(got, want)


# ---- known bugs outside the code generator (strict: they fail loudly once fixed) ----

@pytest.mark.opencl
@pytest.mark.parametrize("op", ["maximum", "minimum", "relu", "clip"])
def test_elementwise_extrema_propagate_nan(cl_device, op):
    x = gc.placeholder((4,), name="x")
    y = {"maximum": lambda: gc.maximum(x, 0.5), "minimum": lambda: gc.minimum(x, 0.5),
         "relu": lambda: gc.relu(x), "clip": lambda: gc.clip(x, -1.0, 1.0)}[op]()
    feed = np.array([np.nan, -3.0, 0.25, 2.0], np.float32)
    np.testing.assert_array_equal(gc.function([x], y, device=cl_device)(feed),
                                  gc.interpret(y, {x: feed}))
