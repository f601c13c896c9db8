"""Tests of graphc.codegen.gemm: generated GEMM kernels against numpy, both device variants."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from graphc.codegen.gemm import (CpuTiles, DeviceInfo, Epilogue, GemmKernel, GemmSpec,
                                 cpu_tiles, device_info_from, gemm_kernel, gpu_tile_size,
                                 render_store)
from graphc.runtime import BufferArg, BufferSpec, Executable, IOBinding, KernelLaunch, Plan

NP_DTYPE = {"float": "float32", "double": "float64"}
TOLERANCE = {"float": 1e-5, "double": 1e-12}
AVX512_CPU = DeviceInfo("cpu", compute_units=2, max_work_group_size=4096,
                        local_mem_size=1 << 20, preferred_float_vector_width=16)
SMALL_GPU = DeviceInfo("gpu", compute_units=8, max_work_group_size=64, local_mem_size=1024,
                       preferred_float_vector_width=1)

# (batch, m, n, k): tiny, primes, vectors, non-multiples of every tile, K above one panel.
SHAPES = [(1, 1, 1, 1), (1, 7, 13, 5), (1, 1, 127, 33), (1, 65, 1, 129), (2, 37, 70, 45),
          (1, 9, 33, 300), (2, 6, 200, 300)]
LAYOUTS = [(False, False), (False, True), (True, False), (True, True)]


def spec_for(shape: tuple[int, int, int, int], dtype: str = "float", a_trans: bool = False,
             b_trans: bool = False, a_broadcast: bool = False,
             b_broadcast: bool = False) -> GemmSpec:
    """A GemmSpec with dense batch strides (0 for a broadcast operand)."""
    batch, m, n, k = shape
    return GemmSpec(batch, m, n, k, dtype, a_trans, b_trans,
                    0 if a_broadcast else m * k, 0 if b_broadcast else k * n)


def operands(spec: GemmSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random A and B in the spec's stored layouts (one batch where the stride is 0)."""
    rng = np.random.default_rng(seed)
    a_shape = (spec.k, spec.m) if spec.a_trans else (spec.m, spec.k)
    b_shape = (spec.n, spec.k) if spec.b_trans else (spec.k, spec.n)
    a_batch = spec.batch if spec.a_batch_stride else 1
    b_batch = spec.batch if spec.b_batch_stride else 1
    dtype = NP_DTYPE[spec.dtype]
    return (rng.standard_normal((a_batch, *a_shape)).astype(dtype),
            rng.standard_normal((b_batch, *b_shape)).astype(dtype))


def reference(spec: GemmSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """op(A) @ op(B) accumulated in float64, broadcast to (batch, m, n)."""
    left = a.astype(np.float64)
    right = b.astype(np.float64)
    left = left.transpose(0, 2, 1) if spec.a_trans else left
    right = right.transpose(0, 2, 1) if spec.b_trans else right
    return np.broadcast_to(left @ right, (spec.batch, spec.m, spec.n))


def run_kernels(device, jobs: list[tuple[GemmKernel, dict, dict]],
                dtype: str) -> list[list[np.ndarray]]:
    """Run kernels from one program (one build); each job is (kernel, inputs, output shapes)
    whose names, inputs first, follow the kernel's parameters. Returns each job's outputs."""
    buffers, inputs, outputs, launches, feeds = [], [], [], [], []
    for kernel, job_inputs, job_outputs in jobs:
        names = [f"{kernel.name}_{name}" for name in [*job_inputs, *job_outputs]]
        for name, array in zip(names, job_inputs.values()):
            buffers.append(BufferSpec(name, max(array.nbytes, 1), "input"))
            inputs.append(IOBinding(name, name, array.shape, str(array.dtype)))
            feeds.append(array)
        for name, shape in zip(names[len(job_inputs):], job_outputs.values()):
            buffers.append(BufferSpec(name, int(np.prod(shape)) * np.dtype(dtype).itemsize,
                                      "output"))
            outputs.append(IOBinding(name, name, shape, dtype))
        launches.append(KernelLaunch(kernel.name, tuple(BufferArg(n) for n in names),
                                     kernel.global_size, kernel.local_size, flops=kernel.flops))
    source = "\n".join(kernel.source for kernel, _, _ in jobs)
    plan = Plan(source, "", tuple(buffers), tuple(inputs), tuple(outputs), (), tuple(launches))
    results = iter(Executable(device, plan).run(feeds))
    return [[next(results) for _ in job_outputs] for _, _, job_outputs in jobs]


def check_products(device, specs: list[GemmSpec], info: DeviceInfo) -> None:
    """The kernels for specs on info's variant match numpy within the dtype's tolerance."""
    jobs, expected = [], []
    for index, spec in enumerate(specs):
        a, b = operands(spec, seed=index)
        kernel = gemm_kernel(f"gemm{index}", spec, Epilogue(), info)
        jobs.append((kernel, {"A": a, "B": b}, {"C": (spec.batch, spec.m, spec.n)}))
        expected.append(reference(spec, a, b))
    results = run_kernels(device, jobs, NP_DTYPE[specs[0].dtype])
    for (kernel, _, _), (c,), want, spec in zip(jobs, results, expected, specs):
        scale = np.abs(want).max() + 1.0
        np.testing.assert_allclose(c, want, rtol=0, atol=TOLERANCE[spec.dtype] * scale,
                                   err_msg=f"{spec} with {kernel.tiles}")


def variants(device) -> list[DeviceInfo]:
    """The device's own DeviceInfo and the other variant forced on it (both must be right)."""
    info = device_info_from(device)
    other = "gpu" if info.type == "cpu" else "cpu"
    return [info, dataclasses.replace(info, type=other)]


# ---------------------------------------------------------------- no device needed


def test_cpu_tiles_use_wide_vectors_and_fit_local_memory():
    spec = spec_for((1, 1024, 1024, 1024))
    tiles = cpu_tiles(spec, AVX512_CPU)
    assert (tiles.rows, tiles.vectors, tiles.width) == (8, 2, 16)
    assert tiles.mc % tiles.rows == 0 and tiles.kc <= spec.k
    assert (tiles.kc * tiles.nc + tiles.mc * tiles.nc) * 4 <= AVX512_CPU.local_mem_size


def test_cpu_tiles_give_few_rows_more_vectors():
    few_rows = spec_for((64, 6, 192, 400))
    tiles = cpu_tiles(few_rows, AVX512_CPU)
    assert (tiles.rows, tiles.vectors) == (6, 4)
    assert cpu_tiles(few_rows, dataclasses.replace(AVX512_CPU, preferred_float_vector_width=8)
                     ).vectors == 2            # 16 registers: 6 x 2 accumulators already
    assert cpu_tiles(spec_for((1, 8, 192, 400)), AVX512_CPU).vectors == 2


def test_cpu_tiles_shrink_to_a_small_local_memory():
    for local_mem_size in (32768, 4096):
        info = dataclasses.replace(AVX512_CPU, local_mem_size=local_mem_size)
        tiles = cpu_tiles(spec_for((1, 1024, 1024, 1024)), info)
        assert (tiles.kc * tiles.nc + tiles.mc * tiles.nc) * 4 <= local_mem_size
    with pytest.raises(ValueError, match="local memory"):
        cpu_tiles(spec_for((1, 64, 64, 64)), dataclasses.replace(AVX512_CPU, local_mem_size=64))


def test_cpu_tiles_shrink_to_small_shapes_and_keep_cores_busy():
    assert cpu_tiles(spec_for((1, 1, 1, 1)), AVX512_CPU) == CpuTiles(1, 1, 2, 1, 1, 1, "cols")
    tiles = cpu_tiles(spec_for((1, 64, 64, 64)), AVX512_CPU)
    items = -(-64 // tiles.nc) * -(-64 // tiles.mc)
    assert items >= 2 * AVX512_CPU.compute_units
    assert cpu_tiles(spec_for((1, 5, 7, 3), "double"), AVX512_CPU).width == 8


def test_tuning_overrides_the_analytic_choice():
    info = dataclasses.replace(AVX512_CPU, tuning={"rows": 4, "kc": 32, "order": "rows"})
    tiles = cpu_tiles(spec_for((1, 256, 256, 256)), info)
    assert (tiles.rows, tiles.kc, tiles.order) == (4, 32, "rows")
    assert gpu_tile_size(spec_for((1, 8, 8, 8)), dataclasses.replace(SMALL_GPU, tuning={"ts": 4}))\
        == 4


def test_gpu_tiles_respect_work_group_and_local_memory_limits():
    spec = spec_for((1, 100, 100, 100), "double")
    assert gpu_tile_size(spec, dataclasses.replace(SMALL_GPU, local_mem_size=1 << 16)) == 8
    assert gpu_tile_size(spec, dataclasses.replace(SMALL_GPU, max_work_group_size=1024)) == 4
    kernel = gemm_kernel("g", spec, Epilogue(), SMALL_GPU)
    assert kernel.local_size == (4, 4, 1) and kernel.global_size == (100, 100, 1)


def test_kernel_signature_geometry_and_flops():
    spec = spec_for((3, 37, 70, 45))
    kernel = gemm_kernel("mm_fwd", spec, Epilogue(), AVX512_CPU)
    assert re.search(r"__kernel void mm_fwd\(__global const float\* restrict A, "
                     r"__global const float\* restrict B,\s+__global float\* restrict C\)",
                     kernel.source)
    assert kernel.flops == 2 * 3 * 37 * 70 * 45 and kernel.local_size == (1, 1, 1)
    helpers = re.findall(r"^void (\w+)\(", kernel.source, flags=re.M)
    assert helpers and all(h.startswith("mm_fwd_") for h in helpers)


def test_store_template_fills_names_and_leaves_other_braces():
    spec = spec_for((2, 3, 4, 5), "double")
    text = render_store("if ({i} < {m}) { Y[{b} * {n} + {j}] = ({T}){acc}; }", spec)
    assert text == "if (row_ < 3) { Y[batch_ * 4 + col_] = (double)acc_; }"


def test_invalid_specs_and_clashing_parameter_names_are_refused():
    with pytest.raises(ValueError, match="m must be >= 1"):
        spec_for((1, 0, 4, 4))
    with pytest.raises(ValueError, match="dtype"):
        spec_for((1, 4, 4, 4), "int")     # half is valid: float16 operands
    with pytest.raises(ValueError, match="32-bit"):
        spec_for((1 << 12, 1 << 10, 1 << 10, 1))
    clash = Epilogue(("__global float* restrict C", "__global const float* restrict ap"))
    with pytest.raises(ValueError, match="'ap' is used by the GEMM kernel"):
        gemm_kernel("g", spec_for((1, 4, 4, 4)), clash, AVX512_CPU)
    with pytest.raises(ValueError, match="unknown GEMM tuning keys"):
        gemm_kernel("g", spec_for((1, 4, 4, 4)), Epilogue(),
                    dataclasses.replace(AVX512_CPU, tuning={"row": 4}))
    with pytest.raises(ValueError, match="not a C identifier"):
        gemm_kernel("1g", spec_for((1, 4, 4, 4)), Epilogue(), AVX512_CPU)


# ---------------------------------------------------------------- on a device


@pytest.mark.opencl
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float_product_all_layouts_both_variants(cl_device, shape):
    for info in variants(cl_device):
        check_products(cl_device, [spec_for(shape, "float", *layout) for layout in LAYOUTS],
                       info)


@pytest.mark.opencl
def test_double_product_all_layouts_both_variants(cl_device):
    if not cl_device.fp64:
        pytest.skip("device has no fp64")
    for info in variants(cl_device):
        check_products(cl_device, [spec_for((2, 19, 41, 23), "double", *layout)
                                   for layout in LAYOUTS], info)


@pytest.mark.opencl
def test_batch_broadcast_by_zero_stride(cl_device):
    for info in variants(cl_device):
        check_products(cl_device, [spec_for((3, 10, 20, 17), "float", False, True, *broadcast)
                                   for broadcast in [(True, False), (False, True)]], info)


@pytest.mark.opencl
def test_cpu_blocking_edges_with_small_tiles(cl_device):
    """Several work items per axis, partial blocks and a depth split into uneven panels."""
    info = dataclasses.replace(device_info_from(cl_device), type="cpu",
                               tuning={"mc": 16, "panels": 2, "kc": 16, "order": "rows"})
    check_products(cl_device, [spec_for((2, 37, 70, 45), "float", *layout)
                               for layout in LAYOUTS], info)


BIAS_RELU = Epilogue(
    params=("__global const {T}* restrict bias", "__global {T}* restrict C",
            "__global {T}* restrict Z"),
    store="const {T} z = {acc} + bias[{j}];\n"
          "Z[({b} * {m} + {i}) * {n} + {j}] = z;\n"
          "C[({b} * {m} + {i}) * {n} + {j}] = fmax(z, ({T})0);")


@pytest.mark.opencl
def test_epilogue_bias_relu_and_a_second_output(cl_device):
    spec = spec_for((2, 23, 45, 31), "float", False, True)
    a, b = operands(spec)
    bias = np.random.default_rng(1).standard_normal(spec.n).astype(np.float32)
    z_expected = reference(spec, a, b) + bias
    for info in variants(cl_device):
        kernel = gemm_kernel("dense_relu", spec, BIAS_RELU, info)
        shape = (spec.batch, spec.m, spec.n)
        [(c, z)] = run_kernels(cl_device, [(kernel, {"A": a, "B": b, "bias": bias},
                                            {"C": shape, "Z": shape})], "float32")
        np.testing.assert_allclose(z, z_expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(c, np.maximum(z_expected, 0), rtol=0, atol=1e-4)


@pytest.mark.opencl
def test_two_gemm_kernels_share_one_program(cl_device):
    cl = pytest.importorskip("pyopencl")
    info = device_info_from(cl_device)
    first = gemm_kernel("mm_a", spec_for((1, 5, 6, 7)), Epilogue(), info)
    second = gemm_kernel("mm_b", spec_for((1, 9, 4, 3), "float", True, True), Epilogue(), info)
    program = cl_device.build(first.source + "\n" + second.source)
    names = set(program.get_info(cl.program_info.KERNEL_NAMES).split(";"))
    assert {"mm_a", "mm_b"} <= names
