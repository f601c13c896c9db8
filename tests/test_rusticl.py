"""The op suite on a second, independent OpenCL implementation: Mesa's rusticl on llvmpipe.

test_device_ops.py runs again in a child pytest with RUSTICL_ENABLE=llvmpipe (rusticl lists
no device without it) and GRAPHC_DEVICE=llvmpipe. Debian's mesa-opencl-icd provides it
(.ci/run installs it); without it this test skips.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_cases import has_platform, run_suite, summary

RUSTICL_ENV = {"RUSTICL_ENABLE": "llvmpipe", "GRAPHC_DEVICE": "llvmpipe"}


@pytest.fixture(scope="module")
def rusticl():
    if not has_platform("rusticl", RUSTICL_ENV):
        pytest.skip("no rusticl device (apt-get install mesa-opencl-icd)")


@pytest.mark.opencl
@pytest.mark.slow
def test_op_suite_passes_on_rusticl_llvmpipe(rusticl):
    result = run_suite(RUSTICL_ENV)
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)


@pytest.mark.opencl
@pytest.mark.slow
def test_horizontally_merged_kernels_pass_on_rusticl_llvmpipe(rusticl):
    result = run_suite(RUSTICL_ENV, suite=Path(__file__).parent / "test_horizontal.py")
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)


@pytest.mark.opencl
@pytest.mark.slow
def test_zero_copy_feeds_and_async_calls_pass_on_rusticl_llvmpipe(rusticl):
    result = run_suite(RUSTICL_ENV, suite=Path(__file__).parent / "test_host_io.py")
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)


NO_KERNELS = "import graphc as gc; gc.function([], [])()"


@pytest.mark.opencl
def test_a_function_without_kernels_runs_on_rusticl(rusticl):
    child = subprocess.run([sys.executable, "-c", NO_KERNELS], env={**os.environ, **RUSTICL_ENV},
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]


@pytest.mark.opencl
@pytest.mark.slow
@pytest.mark.parametrize("suite", ["test_pool_rows.py", "test_gemm_half.py"])
def test_pool_rows_and_half_gemm_templates_pass_on_rusticl_llvmpipe(rusticl, suite):
    result = run_suite(RUSTICL_ENV, suite=Path(__file__).parent / suite)
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)
