"""The Vulkan backend under the Khronos validation layer, on lavapipe (or any Vulkan device).

Child processes run with VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation and
GRAPHC_VULKAN_VALIDATION: the layer's API checks, synchronization validation (a missing
barrier between dependent dispatches) and, for the planted faults, GPU-assisted validation
(a shader access outside its binding), every message collected by a debug-utils messenger;
conftest.py fails any test during which a message arrives. The planted faults show that the
checks bite; the slow test runs the device op suite, the gradient checks, the hypothesis
fuzzing, the thread tests, the Vulkan tests and the example models' accuracy targets there
(the Vulkan counterpart of test_oclgrind.py). Without a Vulkan device, glslangValidator or
the layer, everything here skips.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_cases import run_suite, summary

HERE = Path(__file__).parent
VALIDATION_ENV = {"GRAPHC_DEVICE": "vulkan", "VK_INSTANCE_LAYERS": "VK_LAYER_KHRONOS_validation",
                  "GRAPHC_VULKAN_VALIDATION": "all"}
# The suites run under the layer's API checks and synchronization validation; GPU-assisted
# validation instruments every shader and made the op suite run past its time limit on
# 2 shared cores, so it checks the planted out-of-bounds write (and anyone's own run).
SUITE_ENV = {**VALIDATION_ENV, "GRAPHC_VULKAN_VALIDATION": "sync"}
PROBE = """
from graphc.runtime import vulkan_api as va
from graphc.runtime import devices
ok = any(d.backend == "vulkan" for d in devices()) and va.VALIDATION_LAYER in va._instance_layers()
raise SystemExit(0 if ok else 1)
"""

PLANTED = """
import sys
import numpy as np
import graphc as gc
from graphc.codegen.glsl_renderer import PRELUDE
from graphc.runtime import Executable, select_device
from graphc.runtime.launch import BufferArg, BufferSpec, IOBinding, KernelLaunch, Plan
from graphc.runtime.vulkan_api import validation_messages
from graphc.runtime.vulkan_executable import VulkanExecutable

fault = sys.argv[1]
device = select_device("vulkan")
if fault == "barrier":
    VulkanExecutable.insert_barriers = False        # the planted fault
    x = gc.placeholder((256,), "float32", name="x")
    fn = gc.function([x], [gc.sum(gc.exp(x), axis=0) * x], device=device)
    fn(np.ones(256, np.float32))
else:
    n, past = 64, int(sys.argv[2])
    source = PRELUDE.format(extensions="") + f'''
//@kernel planted
layout(std430, binding = 0) readonly buffer B0 {{ float b_x[]; }};
layout(std430, binding = 1) buffer B1 {{ float b_y[]; }};
void main() {{
  const int gid = GRAPHC_GID;
  if (gid >= {n}) return;
  b_y[gid + {past}] = b_x[gid] * 2.0;
}}
'''
    plan = Plan(source, "", (BufferSpec("x", 4 * n, "input"), BufferSpec("y", 4 * n, "output")),
                (IOBinding("x", "x", (n,), "float32"),), (IOBinding("y", "y", (n,), "float32"),),
                (), (KernelLaunch("planted", (BufferArg("x"), BufferArg("y")), (n,), (64,)),))
    Executable(device, plan)(np.ones(n, np.float32))
print("MESSAGES", len(validation_messages()))
for message in validation_messages():
    print(message[:400])
"""


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **VALIDATION_ENV},
                          cwd=HERE.parent, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def validated():
    if shutil.which("glslangValidator") is None:
        pytest.skip("no glslangValidator (apt-get install glslang-tools)")
    if run_child(PROBE).returncode != 0:
        pytest.skip("no Vulkan device or no validation layer (apt-get install "
                    "mesa-vulkan-drivers vulkan-validationlayers; pip install graphc[vulkan])")


def test_a_planted_out_of_bounds_write_is_caught(validated):
    clean = run_child(PLANTED, "oob", "0")
    assert clean.returncode == 0 and "MESSAGES 0" in clean.stdout, clean.stdout + clean.stderr
    planted = run_child(PLANTED, "oob", "8")
    assert planted.returncode == 0, planted.stderr[-3000:]
    assert "out of bounds" in planted.stdout, planted.stdout


def test_a_planted_missing_barrier_is_caught(validated):
    planted = run_child(PLANTED, "barrier")
    assert planted.returncode == 0, planted.stderr[-3000:]
    assert "SYNC-HAZARD-READ-AFTER-WRITE" in planted.stdout, planted.stdout


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["test_device_ops.py", "test_gradients.py", "test_vulkan.py",
                                   "test_fuzz_compile.py", "test_threads.py", "test_models.py"])
def test_suite_passes_on_vulkan_with_zero_validation_messages(validated, suite):
    result = run_suite(SUITE_ENV, timeout=1500, suite=HERE / suite)
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)
