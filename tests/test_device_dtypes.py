"""float16 runs on every device (stored as half, computed in float: no cl_khr_fp16 needed,
which PoCL's CPU device lacks), and float64 on a device without cl_khr_fp64 is refused at
compile time, before any program is built, naming the device, the op and the user's line.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import graphc as gc
from device_cases import has_platform
from graphc.runtime import Device

RNG = np.random.default_rng(16)
F16 = np.float16
RUSTICL_ENV = {"RUSTICL_ENABLE": "llvmpipe", "GRAPHC_DEVICE": "llvmpipe"}


def _half(shape, scale=1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(F16)


def _float16_graph():
    x = gc.placeholder((4, 3, 8, 8), gc.float16, name="x")
    w = gc.placeholder((5, 3, 3, 3), gc.float16, name="w")
    a = gc.placeholder((6, 40), gc.float16, name="a")
    b = gc.placeholder((40, 7), gc.float16, name="b")
    labels = gc.placeholder((6,), gc.int32, name="labels")
    conv = gc.tanh(gc.conv2d(x, w, padding=1))
    pooled = gc.avg_pool2d(conv, 2)     # (a max-pool's gradient follows near ties in half)
    logits = a @ b
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    grads = gc.grad(gc.sum(pooled * pooled) * 0.01 + loss, [x, w, a, b])
    outputs = [conv, pooled, gc.max_pool2d(conv, 2), logits, gc.softmax(logits, axis=1),
               gc.log_softmax(logits, axis=0), loss, gc.sum(a, axis=0), gc.mean(a),
               gc.max(a, axis=1), gc.cast(a, gc.float32) * 3.0,
               gc.cast(gc.cast(a, gc.float32) * 3.0, gc.float16),
               gc.take(a, labels, axis=0), gc.concatenate([a, -a], axis=1), *grads]
    feeds = {x: _half(x.shape), w: _half(w.shape, 0.3), a: _half(a.shape),
             b: _half(b.shape, 0.2), labels: RNG.integers(0, 6, 6).astype(np.int32)}
    return feeds, outputs


@pytest.mark.opencl
def test_float16_graphs_run_without_cl_khr_fp16(cl_device):
    feeds, outputs = _float16_graph()
    fn = gc.function(list(feeds), outputs, device=cl_device)
    assert "cl_khr_fp16" not in fn.compiled.plan.source
    got = fn(*feeds.values())
    want = gc.interpret(outputs, feeds)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, i
        np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=2e-2,
                                   atol=2e-2, err_msg=f"output {i}")


@pytest.mark.opencl
def test_float16_rounds_every_operation_as_numpy_does(cl_device):
    """Computed in float, each float16 result is rounded to half where it is computed, so a
    chain of additions and products is bit for bit numpy's."""
    x, y, z = (gc.placeholder((1000,), gc.float16, name=n) for n in "xyz")
    out = ((x + y) * z - x) * (y + 0.1) + gc.cast(gc.cast(x, gc.float32) * 1.001, gc.float16)
    fn = gc.function([x, y, z], [out], device=cl_device)
    feeds = [_half(1000, 30.0) for _ in range(3)]
    (got,) = fn(*feeds)
    np.testing.assert_array_equal(got, gc.interpret(out, dict(zip([x, y, z], feeds))))


def _device_without_fp64() -> Device:
    """A device description that has no double (and builds nothing)."""
    return Device(index=3, name="no-double-cpu", vendor="graphc", platform_name="test",
                  platform_version="OpenCL 1.2 test", type="cpu", unified_memory=True,
                  compute_units=2, global_mem_size=2**32, max_mem_alloc_size=2**30,
                  local_mem_size=2**16, max_work_group_size=256,
                  max_work_item_sizes=(256, 256, 256), preferred_float_vector_width=8,
                  fp16=False, fp64=False, opencl_c_version=(1, 2), driver_version="test",
                  extensions=frozenset(), cl_device=None, cl_platform=None)


def test_float64_is_refused_before_any_program_is_built():
    device = _device_without_fp64()
    built = []
    device.build = lambda *args, **kwargs: built.append(args)
    x = gc.placeholder((3, 4), gc.float32, name="x")
    y = gc.sum(gc.exp(gc.cast(x, gc.float64)), axis=1); line = sys._getframe().f_lineno  # noqa: E702
    with pytest.raises(gc.DTypeError) as error:
        gc.function([x], [y], device=device)
    text = str(error.value)
    assert "cl_khr_fp64" in text and "no-double-cpu" in text, text
    assert f"test_device_dtypes.py:{line}" in text, text
    assert text.startswith("cast(f32[3,4]): computes in float64"), text
    assert not built


@pytest.mark.opencl
def test_float64_refused_on_a_real_device_without_double(cl_device):
    """The same refusal on a real device described as lacking double (its own build is
    never reached)."""
    device = replace(cl_device, fp64=False, _context=None, _queue=None, _programs={},
                     build_stats=[])
    x = gc.placeholder((5,), gc.float64, name="x")
    with pytest.raises(gc.DTypeError, match=r"multiply\(f64\[5\], f64\[\]\): computes in "
                                            r"float64.*no cl_khr_fp64"):
        gc.function([x], [x * 2.0], device=device)


RUSTICL_SCRIPT = """
import numpy as np, graphc as gc
x = gc.placeholder((4,), gc.float16, name="x")
h = gc.function([x], [gc.exp(x) * 2.0 + gc.sum(x)])
(got,) = h(np.arange(4, dtype=np.float16))
print("half ok", got.dtype, got.tolist())
d = gc.placeholder((4,), gc.float64, name="d")
try:
    gc.function([d], [gc.sqrt(d) + 1.0])
except gc.DTypeError as error:
    print("refused:", error)
"""


@pytest.mark.opencl
def test_rusticl_runs_float16_and_refuses_float64():
    if not has_platform("rusticl", RUSTICL_ENV):
        pytest.skip("no rusticl device (apt-get install mesa-opencl-icd)")
    child = subprocess.run([sys.executable, "-c", RUSTICL_SCRIPT], capture_output=True,
                           text=True, timeout=300, env={**os.environ, **RUSTICL_ENV})
    assert child.returncode == 0, child.stderr[-3000:]
    assert "half ok float16" in child.stdout, child.stdout
    assert "refused: sqrt(f64[4]): computes in float64, which device" in child.stdout, \
        child.stdout
    assert "llvmpipe" in child.stdout and "<string>:9" in child.stdout, child.stdout
