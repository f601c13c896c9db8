"""float16 matmuls through the CPU GEMM template (kernels_cl/gemm_cpu_half.cl): operands stored
as half, converted as they are packed, accumulated in float, the product rounded to half once.
Against a float64 reference of the same float16 inputs and against the interpreter, over the
awkward shapes of test_gemm.py (tiny, primes, one row or column, K above one packed block),
every layout (transposed A and B as layout flags), a batch, and a fused epilogue; that the
GEMM template is what ran; and that the GPU variant refuses half (build_gemm then declines and
the loop kernel runs)."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.built import GemmBody
from graphc.codegen.gemm import DeviceInfo, GemmSpec

pytestmark = pytest.mark.opencl

SHAPES = [(1, 1, 1), (7, 13, 5), (1, 127, 33), (65, 1, 129), (37, 70, 45), (9, 33, 300),
          (6, 200, 300)]
LAYOUTS = [(False, False), (False, True), (True, False), (True, True)]


def _half_gemms(fn) -> list[GemmSpec]:
    return [k.body.spec for k in fn.compiled.kernels
            if isinstance(k.body, GemmBody) and k.body.spec.dtype == "half"]


def _close(got, want, k: int) -> None:
    """Within half's rounding of the result (2^-11 relative) plus float accumulation."""
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-3,
                               atol=1e-3 * max(1.0, np.sqrt(k)))


@pytest.mark.parametrize("a_trans, b_trans", LAYOUTS, ids=str)
@pytest.mark.parametrize("m, n, k", SHAPES, ids=str)
def test_half_matmul_runs_the_gemm_template(cl_device, m, n, k, a_trans, b_trans):
    if cl_device.type != "cpu":
        pytest.skip("the float16 GEMM template is the CPU variant's")
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if a_trans else (m, k)).astype(np.float16)
    b = rng.standard_normal((n, k) if b_trans else (k, n)).astype(np.float16)
    x = gc.placeholder(a.shape, gc.float16, name="a")
    w = gc.placeholder(b.shape, gc.float16, name="b")
    y = (gc.transpose(x) if a_trans else x) @ (gc.transpose(w) if b_trans else w)
    fn = gc.function([x, w], y)
    specs = _half_gemms(fn)
    assert len(specs) == 1 and (specs[0].a_trans, specs[0].b_trans) == (a_trans, b_trans)
    got = fn(a, b)
    assert got.dtype == np.float16
    left = a.astype(np.float64).T if a_trans else a.astype(np.float64)
    right = b.astype(np.float64).T if b_trans else b.astype(np.float64)
    _close(got, (left @ right).astype(np.float16), k)
    _close(got, gc.interpret([y], {x: a, w: b})[0], k)


def test_half_batched_matmul_with_a_fused_epilogue(cl_device):
    if cl_device.type != "cpu":
        pytest.skip("the float16 GEMM template is the CPU variant's")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 19, 40)).astype(np.float16)
    b = rng.standard_normal((3, 40, 23)).astype(np.float16)
    bias = rng.standard_normal(23).astype(np.float16)
    x = gc.placeholder(a.shape, gc.float16, name="a")
    w = gc.placeholder(b.shape, gc.float16, name="b")
    y = gc.relu(x @ w + gc.constant(bias))
    fn = gc.function([x, w], [y, gc.cast(y, gc.float32)])
    assert _half_gemms(fn), "the product and its epilogue run as one GEMM kernel"
    got, got32 = fn(a, b)
    want = gc.interpret([y], {x: a, w: b})[0]
    _close(got, want, 40)
    np.testing.assert_array_equal(got32, got.astype(np.float32))


def test_the_half_template_is_the_cpu_variants_only():
    from graphc.codegen.gemm import gemm_kernel, Epilogue
    spec = GemmSpec(1, 4, 4, 4, "half", False, False, 16, 16)
    gpu = DeviceInfo("gpu", compute_units=8, max_work_group_size=64, local_mem_size=4096)
    with pytest.raises(ValueError, match="float16"):
        gemm_kernel("k_half", spec, Epilogue(), gpu)
    cpu = DeviceInfo("cpu", compute_units=2, local_mem_size=1 << 20)
    assert "vload_half" in gemm_kernel("k_half", spec, Epilogue(), cpu).source



@pytest.mark.parametrize("a_trans, b_trans", LAYOUTS, ids=str)
def test_cpu_half_variant_forced_on_the_device_matches_float64(cl_device, a_trans, b_trans):
    """The CPU template rendered for this device whatever its type (Oclgrind reports a GPU),
    every shape and a batch of two in one program, a float output: the float accumulation of
    half operands."""
    import dataclasses

    from graphc.codegen.gemm import Epilogue, device_info_from, gemm_kernel
    from graphc.runtime import BufferArg, BufferSpec, Executable, IOBinding, KernelLaunch, Plan

    info = dataclasses.replace(device_info_from(cl_device), type="cpu")
    buffers, inputs, outputs, launches, feeds, wanted, sources = [], [], [], [], [], [], []
    for index, (m, n, k) in enumerate(SHAPES + [(20, 17, 33)]):
        batch = 2 if index == len(SHAPES) else 1
        spec = GemmSpec(batch, m, n, k, "half", a_trans, b_trans, m * k, k * n)
        kernel = gemm_kernel(f"gemm_half_{index}", spec, Epilogue(), info)
        sources.append(kernel.source)
        rng = np.random.default_rng(index)
        a = rng.standard_normal((batch,) + ((k, m) if a_trans else (m, k))).astype(np.float16)
        b = rng.standard_normal((batch,) + ((n, k) if b_trans else (k, n))).astype(np.float16)
        names = [f"{kernel.name}_{x}" for x in "ABC"]
        for name, array in zip(names, (a, b)):
            buffers.append(BufferSpec(name, array.nbytes, "input"))
            inputs.append(IOBinding(name, name, array.shape, "float16"))
            feeds.append(array)
        buffers.append(BufferSpec(names[2], batch * m * n * 4, "output"))
        outputs.append(IOBinding(names[2], names[2], (batch, m, n), "float32"))
        launches.append(KernelLaunch(kernel.name, tuple(BufferArg(x) for x in names),
                                     kernel.global_size, kernel.local_size))
        left, right = a.astype(np.float64), b.astype(np.float64)
        wanted.append((left.transpose(0, 2, 1) if a_trans else left)
                      @ (right.transpose(0, 2, 1) if b_trans else right))
    plan = Plan("\n".join(sources), "", tuple(buffers), tuple(inputs), tuple(outputs), (),
                tuple(launches))
    for got, want in zip(Executable(cl_device, plan).run(feeds), wanted):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * (np.abs(want).max() + 1.0))


def test_a_renderer_without_the_half_template_gets_the_loop_kernel():
    """A backend whose renderer lacks "gemm_half" (Vulkan's) never sees a half GemmBody."""
    from graphc.codegen.build import HALF_GEMM, build_kernels
    from graphc.codegen.gemm import DeviceInfo
    from graphc.codegen.kernel_groups import KernelGroup

    a = gc.placeholder((5, 6), gc.float16, name="a")
    b = gc.placeholder((6, 7), gc.float16, name="b")
    y = a @ b
    buffers = {a: "a", b: "b", y: "y"}
    nbytes = {"a": 60, "b": 84, "y": 70}
    cpu = DeviceInfo("cpu", compute_units=2, local_mem_size=1 << 20)
    group = KernelGroup("loop", y, (y,))
    (without,) = build_kernels(group, buffers, nbytes, cpu)
    (with_it,) = build_kernels(group, buffers, nbytes, cpu, templates=frozenset({HALF_GEMM}))
    assert not isinstance(without.body, GemmBody)
    assert isinstance(with_it.body, GemmBody) and with_it.body.spec.dtype == "half"
