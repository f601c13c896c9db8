"""Tests of graphc.runtime: devices, program cache, plans run by Executable, errors."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from graphc.runtime import (BufferArg, BufferSpec, CompileError, Device, DeviceError, Executable,
                            GraphcError, IOBinding, KernelLaunch, LaunchError, Plan,
                            ResidentArray, ScalarArg, devices, format_device_table,
                            format_profile, select_device)
from graphc.runtime import device as device_module
from graphc.runtime.launch import plan_problems
from graphc.runtime.program_cache import driver_caches_binaries

SOURCE = """
__kernel void vadd(__global const float *a, __global const float *b, __global float *out,
                   const int n) {
    const int i = get_global_id(0);
    if (i < n) out[i] = a[i] + b[i];
}

__kernel void scale(__global float *w, const float s, const int n) {
    const int i = get_global_id(0);
    if (i < n) w[i] *= s;
}
"""


def vector(name: str, buffer: str, n: int) -> IOBinding:
    """A float32 vector binding."""
    return IOBinding(name, buffer, (n,), "float32")


def launch(name: str, args: tuple, n: int, local: int | None = None) -> KernelLaunch:
    """A 1-D launch over n items, rounded up to the local size like the compiler does."""
    if local is None:
        return KernelLaunch(name, args, (n,), None, flops=n, bytes_read=8 * n, bytes_written=4 * n)
    padded = -(-n // local) * local
    return KernelLaunch(name, args, (padded,), (local,), flops=n)


def vadd_plan(n: int, local: int | None = None) -> Plan:
    """z = x + y over n floats."""
    args = (BufferArg("a"), BufferArg("b"), BufferArg("out"), ScalarArg(n, "int32"))
    return Plan(SOURCE, "", buffers=(BufferSpec("a", 4 * n, "input"),
                                     BufferSpec("b", 4 * n, "input"),
                                     BufferSpec("out", 4 * n, "output")),
                inputs=(vector("x", "a", n), vector("y", "b", n)),
                outputs=(vector("z", "out", n),), variables=(),
                launches=(launch("vadd", args, n, local),))


def scale_plan(n: int, factor: float) -> Plan:
    """w *= factor in place (a variable), then z = w + x."""
    scale_args = (BufferArg("w"), ScalarArg(factor, "float32"), ScalarArg(n, "int32"))
    add_args = (BufferArg("w"), BufferArg("x"), BufferArg("z"), ScalarArg(n, "int32"))
    return Plan(SOURCE, "", buffers=(BufferSpec("w", 4 * n, "variable"),
                                     BufferSpec("x", 4 * n, "input"),
                                     BufferSpec("z", 4 * n, "output")),
                inputs=(vector("x", "x", n),), outputs=(vector("z", "z", n),),
                variables=(vector("W", "w", n),),
                launches=(launch("scale", scale_args, n), launch("vadd", add_args, n)))


def fake_device(index: int, kind: str, unified: bool = True, platform: str = "Fake",
                version: str = "OpenCL 3.0 Fake 1.0", units: int = 4) -> Device:
    """A Device record with no OpenCL behind it, for selection logic."""
    return Device(index, f"{kind}-{index}", "vendor", platform, version, kind, unified, units,
                  1 << 30, 1 << 28, 1 << 15, 256, (256, 256, 256), 8, False, True, (1, 2),
                  "1.0", frozenset(), None, None)


# ---------------------------------------------------------------- no device needed


def test_errors_share_the_graphc_root():
    for error in (DeviceError, CompileError, LaunchError):
        assert issubclass(error, GraphcError)


def test_opencl_c_and_driver_versions_parse():
    assert device_module.parse_opencl_c_version("OpenCL C 1.2 pocl") == (1, 2)
    assert device_module.parse_opencl_c_version("garbage") == (1, 0)
    parse = device_module.parse_implementation_version
    assert parse("OpenCL 3.0 PoCL 3.1+debian  Linux, LLVM 15.0.6", "3.1+debian") == (3, 1)
    assert parse("OpenCL 3.0 PoCL 3.0-rc2  Linux", "3.0-rc2") == (3, 0)


def test_best_device_prefers_gpus_then_newer_pocl(monkeypatch):
    old_pocl = fake_device(0, "cpu", version="OpenCL 3.0 PoCL 3.0-rc2", units=8)
    new_pocl = fake_device(1, "cpu", version="OpenCL 3.0 PoCL 3.1+debian", units=2)
    integrated = fake_device(2, "gpu", unified=True)
    discrete = fake_device(3, "gpu", unified=False)
    monkeypatch.delenv("GRAPHC_DEVICE", raising=False)
    monkeypatch.setattr(device_module, "devices", lambda: [old_pocl, new_pocl])
    assert select_device() is new_pocl
    monkeypatch.setattr(device_module, "devices",
                        lambda: [old_pocl, new_pocl, integrated, discrete])
    assert select_device() is discrete
    assert select_device(2) is integrated
    assert select_device("CPU-0") is old_pocl


def test_graphc_device_env_picks_and_reports(monkeypatch):
    found = [fake_device(0, "cpu"), fake_device(1, "gpu")]
    monkeypatch.setattr(device_module, "devices", lambda: found)
    monkeypatch.setenv("GRAPHC_DEVICE", "0")
    assert select_device() is found[0]
    monkeypatch.setenv("GRAPHC_DEVICE", "nothing-like-this")
    with pytest.raises(DeviceError, match=r"GRAPHC_DEVICE.*nothing-like-this"):
        select_device()


def test_no_device_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(device_module, "devices", lambda: [])
    with pytest.raises(DeviceError, match="no OpenCL platform/device") as info:
        select_device()
    assert "pocl-opencl-icd" in str(info.value)
    assert "graphc[pocl]" in str(info.value)
    assert "no OpenCL platform/device" in format_device_table()


def test_plan_problems_name_unknown_buffers():
    plan = vadd_plan(4)
    broken = Plan(plan.source, "", plan.buffers[:2], plan.inputs, plan.outputs, (),
                  plan.launches)
    problems = plan_problems(broken)
    assert any("'out'" in p for p in problems)
    assert plan_problems(plan) == []


def halves_plan(n: int) -> Plan:
    """z = [x + y, x + x]: two launches writing the halves of one buffer through views."""
    half = 4 * n
    low = (BufferArg("a"), BufferArg("b"), BufferArg("low"), ScalarArg(n, "int32"))
    high = (BufferArg("a"), BufferArg("a"), BufferArg("high"), ScalarArg(n, "int32"))
    return Plan(SOURCE, "", buffers=(BufferSpec("a", half, "input"),
                                     BufferSpec("b", half, "input"),
                                     BufferSpec("out", 2 * half, "output"),
                                     BufferSpec("low", half, "scratch", "out", 0),
                                     BufferSpec("high", half, "scratch", "out", half)),
                inputs=(vector("x", "a", n), vector("y", "b", n)),
                outputs=(vector("z", "out", 2 * n),), variables=(),
                launches=(launch("vadd", low, n), launch("vadd", high, n)))


def test_plan_problems_name_views_outside_their_buffer():
    plan = halves_plan(1024)
    assert plan_problems(plan) == []
    outside = BufferSpec("high", 4096, "scratch", "out", 8192)
    orphan = BufferSpec("high", 4096, "scratch", "nowhere", 0)
    for bad, words in ((outside, "outside 'out'"), (orphan, "'nowhere', which is not")):
        broken = Plan(plan.source, "", plan.buffers[:4] + (bad,), plan.inputs, plan.outputs,
                      (), plan.launches)
        assert any(words in p for p in plan_problems(broken)), plan_problems(broken)


# ---------------------------------------------------------------- on a device


@pytest.mark.opencl
def test_views_write_into_their_parent_buffer(cl_device):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 1024)).astype(np.float32)
    executable = Executable(cl_device, halves_plan(1024))
    (z,) = executable.run([x, y])
    np.testing.assert_array_equal(z, np.concatenate([x + y, x + x]))
    assert executable.buffer_bytes == 4 * 1024 * 4      # views allocate nothing


@pytest.mark.opencl
@pytest.mark.parametrize("n", [1, 7, 1000003])
@pytest.mark.parametrize("local", [None, 64])
def test_vector_add_matches_numpy(cl_device, n, local):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    (z,) = Executable(cl_device, vadd_plan(n, local)).run([x, y])
    np.testing.assert_array_equal(z, x + y)


@pytest.mark.opencl
def test_feeds_are_cast_and_made_contiguous(cl_device):
    x = np.arange(14, dtype=np.float64)[::2]  # strided float64 -> contiguous float32
    (z,) = Executable(cl_device, vadd_plan(7)).run([x, np.ones(7)])
    np.testing.assert_array_equal(z, x.astype(np.float32) + 1)


@pytest.mark.opencl
def test_variables_update_in_place_across_runs_and_functions(cl_device):
    n = 7
    w0 = np.arange(n, dtype=np.float32)
    x = np.full(n, 0.5, np.float32)
    weights = ResidentArray(cl_device, w0, "W")
    step = Executable(cl_device, scale_plan(n, 2.0), {"W": weights})
    (z1,) = step.run([x])
    (z2,) = step.run([x])
    np.testing.assert_array_equal(z1, w0 * 2 + x)
    np.testing.assert_array_equal(z2, w0 * 4 + x)
    np.testing.assert_array_equal(weights.read(), w0 * 4)
    weights.write(np.ones(n, np.float32))
    other = Executable(cl_device, scale_plan(n, 3.0), {"W": weights})
    (z3,) = other.run([x])
    np.testing.assert_array_equal(z3, 3 + x)
    np.testing.assert_array_equal(weights.read(), np.full(n, 3, np.float32))


@pytest.mark.opencl
def test_resident_write_rejects_other_shapes_and_dtypes(cl_device):
    weights = ResidentArray(cl_device, np.zeros(3, np.float32), "W")
    with pytest.raises(ValueError, match="shape"):
        weights.write(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        weights.write(np.zeros(3, np.float64))


@pytest.mark.opencl
def test_same_plan_twice_hits_the_memory_cache(cl_device):
    first = Executable(cl_device, vadd_plan(7))
    second = Executable(cl_device, vadd_plan(7))
    assert second.program is first.program
    assert cl_device.build_stats[-1].cache == "memory"


DISK_CHILD = """
import sys
from graphc.runtime import select_device
device = select_device(int(sys.argv[1]))
device.build(sys.stdin.read())
print(device.build_stats[-1].cache)
"""


@pytest.mark.opencl
def test_new_process_hits_the_disk_cache(cl_device, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("POCL_KERNEL_CACHE", "0")      # PoCL's own cache off: graphc's is used
    source = f"// {uuid.uuid4()}\n{SOURCE}"
    cl_device.build(source)
    assert cl_device.build_stats[-1].cache == "miss"
    assert len(list(tmp_path.glob("*.bin"))) == 1
    child = subprocess.run([sys.executable, "-c", DISK_CHILD, str(cl_device.index)],
                           input=source, capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "disk"


def is_pocl(device) -> bool:
    return "portable computing" in device.platform_name.lower()


@pytest.mark.opencl
def test_no_binary_is_written_while_pocl_keeps_its_own(cl_device, tmp_path, monkeypatch):
    if not is_pocl(cl_device):
        pytest.skip("PoCL's kernel cache only")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("POCL_KERNEL_CACHE", raising=False)
    cl_device.build(f"// {uuid.uuid4()}\n{SOURCE}")
    assert cl_device.build_stats[-1].cache == "miss"
    assert list(tmp_path.glob("*.bin")) == []


@pytest.mark.parametrize("platform, setting, expected", [
    ("Portable Computing Language", None, True), ("Portable Computing Language", "1", True),
    ("Portable Computing Language", "0", False), ("Portable Computing Language", "off", False),
    ("NVIDIA CUDA", None, False), ("rusticl", "1", False)])
def test_driver_caches_binaries_only_for_pocl_with_its_cache_on(platform, setting, expected,
                                                                monkeypatch):
    if setting is None:
        monkeypatch.delenv("POCL_KERNEL_CACHE", raising=False)
    else:
        monkeypatch.setenv("POCL_KERNEL_CACHE", setting)
    device = SimpleNamespace(platform_name=platform)
    assert driver_caches_binaries(device) is expected


@pytest.mark.opencl
def test_syntax_error_raises_compile_error_with_log_and_numbered_source(cl_device):
    source = "__kernel void broken(__global float *x) {\n    x[0] = ;\n}\n"
    with pytest.raises(CompileError) as info:
        cl_device.build(source)
    text = str(info.value)
    assert cl_device.name in text
    assert "build log" in text and "error" in text.lower()
    assert re.search(r"^\s+2 \| +x\[0\] = ;$", text, re.MULTILINE)


@pytest.mark.opencl
def test_allocation_above_the_device_limit_names_the_buffer(cl_device):
    too_big = cl_device.max_mem_alloc_size + 1
    plan = Plan(SOURCE, "", (BufferSpec("huge_scratch", too_big, "scratch"),), (), (), (), ())
    with pytest.raises(DeviceError) as info:
        Executable(cl_device, plan)
    assert "huge_scratch" in str(info.value) and str(too_big) in str(info.value)


@pytest.mark.opencl
def test_unknown_kernel_raises_launch_error(cl_device):
    plan = vadd_plan(7)
    bad = Plan(SOURCE, "", plan.buffers, plan.inputs, plan.outputs, (),
               (KernelLaunch("no_such_kernel", (), (7,), None),))
    with pytest.raises(LaunchError, match="no_such_kernel"):
        Executable(cl_device, bad)


@pytest.mark.opencl
def test_unknown_device_lists_the_available_ones(cl_device):
    with pytest.raises(DeviceError) as info:
        select_device("no-such-device-xyz")
    assert "available devices" in str(info.value) and cl_device.name in str(info.value)


@pytest.mark.opencl
def test_device_table_and_capabilities(cl_device):
    assert cl_device in devices()
    assert cl_device.name in format_device_table()
    assert cl_device.type in ("gpu", "cpu", "accelerator")
    assert cl_device.max_mem_alloc_size > 0 and cl_device.opencl_c_version >= (1, 0)


@pytest.mark.opencl
def test_profile_gives_one_timing_per_launch(cl_device):
    n = 1000
    step = Executable(cl_device, scale_plan(n, 1.0),
                      {"W": ResidentArray(cl_device, np.zeros(n, np.float32), "W")})
    step.run([np.zeros(n, np.float32)], profile=True)
    assert [name for name, _ in step.last_profile] == ["scale", "vadd"]
    assert all(seconds >= 0 for _, seconds in step.last_profile)
    assert "vadd" in format_profile(step.plan.launches, step.last_profile)
