"""The Vulkan backend: device discovery and selection, a quick smoke set against numpy and
the interpreter, and one test per device limit (faked smaller on lavapipe's device record).

Without a Vulkan loader or device (or without glslangValidator) the device tests skip; the
selection logic runs on fake device records everywhere. The full op suite and gradient
checks run on lavapipe under the validation layer in test_vulkan_suite.py (slow).
"""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import device as device_module
from graphc.runtime import select_device
from graphc.runtime.errors import DeviceError
from graphc.runtime.launch import BufferArg, ScalarArg
from graphc.runtime.vulkan_device import VulkanDevice


def fake_vulkan(index: int, vk_type: int, name: str = "fake vk") -> VulkanDevice:
    """A VulkanDevice record with no driver behind it (4: CPU, 2: discrete, 1: integrated)."""
    kind = "cpu" if vk_type == 4 else "gpu"
    return VulkanDevice(index, name, "vendor", "Vulkan 1.3", "Vulkan 1.3.0", kind,
                        vk_type != 2, 1, 1 << 30, 1 << 27, 1 << 15, 1024, (1024, 1024, 64), 1,
                        True, True, (0, 0), "1", frozenset(), None, None, vk_type=vk_type)


def fake_opencl(index: int, kind: str, platform: str, unified: bool = True):
    return device_module.Device(index, f"{kind}-{index}", "vendor", platform, "OpenCL 3.0 x",
                                kind, unified, 2, 1 << 30, 1 << 28, 1 << 15, 256,
                                (256, 256, 256), 8, False, True, (1, 2), "1.0", frozenset(),
                                None, None)


# ---------------------------------------------------------------- no device needed


def test_default_keeps_pocl_among_cpus_and_prefers_gpus_across_backends(monkeypatch):
    pocl = fake_opencl(0, "cpu", "Portable Computing Language")
    lavapipe = fake_vulkan(1, 4, "llvmpipe")
    monkeypatch.delenv("GRAPHC_DEVICE", raising=False)
    monkeypatch.setattr(device_module, "devices", lambda: [pocl, lavapipe])
    assert select_device() is pocl                  # both CPUs: PoCL, built for CPUs
    assert select_device("vulkan") is lavapipe
    assert select_device("vulkan:0") is lavapipe
    assert select_device("opencl:0") is pocl
    unknown = r"(?s)vulkan:1.*not found.*llvmpipe \(Vulkan 1.3, vulkan\)"
    with pytest.raises(DeviceError, match=unknown):
        select_device("vulkan:1")
    gpu = fake_vulkan(2, 2, "radv discrete")
    monkeypatch.setattr(device_module, "devices", lambda: [pocl, lavapipe, gpu])
    assert select_device() is gpu                   # a discrete GPU wins across backends
    monkeypatch.setattr(device_module, "devices", lambda: [lavapipe])
    assert select_device() is lavapipe              # the only device
    monkeypatch.setenv("GRAPHC_DEVICE", "vulkan")
    monkeypatch.setattr(device_module, "devices", lambda: [pocl, lavapipe])
    assert select_device() is lavapipe


def test_every_template_op_has_a_generic_fallback():
    """A backend without templates (Vulkan) decomposes every "raw" op of the lowering
    registry: an op added with only an OpenCL template must get a fallback too."""
    from graphc.codegen.fallbacks import FALLBACKS
    from graphc.codegen.lowerings import LOWERINGS
    raw = {op for op, lowering in LOWERINGS.items() if lowering.kind == "raw"}
    assert raw <= set(FALLBACKS), f"no Vulkan fallback for {sorted(raw - set(FALLBACKS))}"


NO_VULKAN = """
import sys
sys.modules["vulkan"] = None            # as if `pip install graphc[vulkan]` was not done
import numpy as np
import graphc as gc
from graphc.runtime import select_device
found = gc.devices()
assert all(d.backend == "opencl" for d in found), found
try:
    select_device("vulkan")
except gc.DeviceError as err:
    print("REFUSED", str(err).splitlines()[0])
if found:
    x = gc.placeholder((3,), "float32", name="x")
    print("RESULT", gc.function([x], [x * 2.0])(np.ones(3, np.float32))[0].tolist())
"""


def test_without_the_vulkan_package_graphc_imports_and_opencl_works():
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_DEVICE"}    # the default
    child = subprocess.run([sys.executable, "-c", NO_VULKAN], capture_output=True, text=True,
                           timeout=300, env=env)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "REFUSED device 'vulkan' not found" in child.stdout
    if "RESULT" in child.stdout:
        assert "RESULT [2.0, 2.0, 2.0]" in child.stdout


# ---------------------------------------------------------------- on a Vulkan device


@pytest.fixture(scope="module")
def vk_device():
    vulkan = [d for d in gc.devices() if d.backend == "vulkan"]
    if not vulkan:
        pytest.skip("no Vulkan device (apt-get install libvulkan1 mesa-vulkan-drivers; "
                    "pip install graphc[vulkan])")
    if shutil.which("glslangValidator") is None:
        pytest.skip("no glslangValidator (apt-get install glslang-tools)")
    return vulkan[0]


def limited(device, **fields):
    """A second record of `device` with smaller limits (its own VkDevice)."""
    return dataclasses.replace(device, _logical=None, **fields)


def test_vulkan_devices_are_listed_with_their_backend(vk_device):
    assert vk_device.backend == "vulkan"
    assert select_device("vulkan") is vk_device
    table = device_module.format_device_table()
    assert "backend" in table.splitlines()[0] and "vulkan" in table


def test_a_training_step_matches_numpy_on_vulkan(vk_device):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3)).astype(np.float32)
    x = gc.placeholder((4, 5), "float32", name="x")
    w = gc.variable(w0, name="w")
    loss = gc.sum(gc.tanh(x @ w))
    (g,) = gc.grad(loss, [w])
    step = gc.function([x], [loss], updates=[(w, w - 0.1 * g)], device=vk_device)
    xs = rng.normal(size=(4, 5)).astype(np.float32)
    want_w = w0
    for _ in range(3):
        got_loss = step(xs)[0]
        y = np.tanh(xs @ want_w)
        np.testing.assert_allclose(got_loss, y.sum(), rtol=1e-5)
        want_w = want_w - 0.1 * xs.T @ (1 - y * y)
    np.testing.assert_allclose(w.get_value(), want_w, rtol=1e-5, atol=1e-6)


def test_random_draws_are_bit_identical_to_the_interpreter(vk_device):
    u = gc.random.uniform((1000,), low=-1.0, high=3.0, seed=7)
    b = gc.random.bernoulli((999,), p=0.3, seed=8)
    fn = gc.function([], [u, b], device=vk_device)
    got = fn()
    want = gc.interpret([u, b])
    for g_, w_ in zip(got, want):
        np.testing.assert_array_equal(g_, w_)


def test_float64_exp_is_a_dtype_error_naming_op_device_and_line(vk_device):
    x = gc.placeholder((3,), "float64", name="x")
    y = gc.exp(x)                                           # the user's line
    with pytest.raises(gc.DTypeError) as info:
        gc.function([x], [y], device=vk_device)
    text = str(info.value)
    assert "exp" in text and "float64" in text and "GLSL" in text
    assert vk_device.name in text and "test_vulkan.py" in text


def test_float64_on_a_device_without_it_is_a_dtype_error(vk_device):
    device = limited(vk_device, fp64=False)
    x = gc.placeholder((3,), "float64", name="x")
    y = x * 2.0 + 1.0                                       # the user's line
    with pytest.raises(gc.DTypeError) as info:
        gc.function([x], [y], device=device)
    text = str(info.value)
    assert "float64" in text and "shaderFloat64" in text and "test_vulkan.py" in text


def test_a_kernel_over_the_storage_buffer_limit_is_split(vk_device):
    device = limited(vk_device, max_storage_buffers=4)
    xs = [gc.placeholder((50,), "float32", name=f"x{i}") for i in range(9)]
    total = xs[0]
    for x in xs[1:]:
        total = total * 1.5 + x
    fn = gc.function(xs, [total], device=device)
    for launch in fn.compiled.plan.launches:
        assert sum(isinstance(a, BufferArg) for a in launch.args) <= 4, launch
    assert len(fn.compiled.plan.launches) > 1
    feeds = [np.random.default_rng(i).normal(size=50).astype(np.float32) for i in range(9)]
    want = feeds[0]
    for f in feeds[1:]:
        want = want * np.float32(1.5) + f
    np.testing.assert_allclose(fn(*feeds)[0], want, rtol=1e-5)


def test_a_concatenation_of_more_inputs_than_buffers_is_split(vk_device):
    device = limited(vk_device, max_storage_buffers=4)
    xs = [gc.placeholder((3, 2), "float32", name=f"c{i}") for i in range(11)]
    fn = gc.function(xs, [gc.concatenate(xs, axis=0) * 2.0], device=device)
    for launch in fn.compiled.plan.launches:
        assert sum(isinstance(a, BufferArg) for a in launch.args) <= 4, launch
    feeds = [np.full((3, 2), i, np.float32) for i in range(11)]
    np.testing.assert_array_equal(fn(*feeds)[0], np.concatenate(feeds) * 2)


def test_int_arguments_past_the_push_constants_go_in_a_uniform_buffer(vk_device):
    device = limited(vk_device, max_push_constant_bytes=0)
    x = gc.placeholder((20,), "float32", name="x")
    y = x[3:17] * 2.0 + x[5:19]                 # slices: offsets passed as int arguments
    fn = gc.function([x], [y], device=device)
    assert any(isinstance(a, ScalarArg) for launch in fn.compiled.plan.launches
               for a in launch.args)
    assert "uniform Scalars" in fn.compiled.plan.source
    feed = np.arange(20, dtype=np.float32)
    np.testing.assert_array_equal(fn(feed)[0], feed[3:17] * 2 + feed[5:19])


def test_a_large_grid_is_folded_into_two_dimensions(vk_device):
    device = limited(vk_device, max_group_count=(3, 65535, 65535))
    x = gc.placeholder((5000,), "float32", name="x")
    fn = gc.function([x], [x * 3.0 - 1.0], device=device)
    feed = np.random.default_rng(1).normal(size=5000).astype(np.float32)
    np.testing.assert_allclose(fn(feed)[0], feed * 3 - 1, rtol=1e-6)


def test_a_tensor_above_the_storage_buffer_range_is_refused_clearly(vk_device):
    device = limited(vk_device, max_storage_buffer_range=4096, max_mem_alloc_size=4096)
    x = gc.placeholder((2000,), "float32", name="big_input")
    with pytest.raises(DeviceError) as info:
        gc.function([x], [x + 1.0], device=device)
    assert "big_input" in str(info.value) or "8000" in str(info.value)


def test_export_carries_a_vulkan_plan_that_load_runs(vk_device, tmp_path):
    from graphc.runtime import load
    w = gc.variable(np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, name="w")
    x = gc.placeholder((4, 2), "float32", name="x")
    fn = gc.function([x], [gc.relu(x @ w)], device=vk_device)
    feed = np.random.default_rng(3).normal(size=(4, 2)).astype(np.float32)
    want = fn(feed)[0]
    assert (want > 0).any() and (want == 0).any()
    folder = fn.export(tmp_path / "exported")
    assert (folder / "vulkan" / "plan.json").is_file()
    assert (folder / "vulkan" / "program.glsl").read_text().startswith("#version 450")
    loaded = load(folder, device="vulkan")
    np.testing.assert_allclose(loaded(feed)[0], want, rtol=1e-6)
    with pytest.raises(gc.ExportError, match="no complete plan for backend 'opencl'"):
        opencl = [d for d in gc.devices() if d.backend == "opencl"]
        if not opencl:
            pytest.skip("no OpenCL device to refuse the Vulkan-only export")
        load(folder, device=opencl[-1])


def test_dumps_profiles_and_numerics_checks_work_on_vulkan(vk_device, monkeypatch):
    x = gc.placeholder((8,), "float32", name="x")
    y = gc.log(x) * 2.0                                     # NaN for x < 0
    fn = gc.function([x], [gc.sum(y, axis=0)], device=vk_device)
    assert "void main()" in fn.dump(source=True)            # the GLSL source is shown
    timings = fn.profile(np.ones(8, np.float32))
    assert timings and all(seconds >= 0 for _, seconds in timings)
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    checked = gc.function([x], [gc.sum(y, axis=0)], device=vk_device)
    with pytest.raises(gc.NumericsError, match="NaN"):
        checked(-np.ones(8, np.float32))


@pytest.mark.parametrize("a_t,b_t", [(False, False), (True, False), (False, True)])
def test_the_glsl_gemm_with_its_epilogue_matches_numpy(vk_device, a_t, b_t):
    """Edge tiles (m, n not multiples of the 4 x 16 tile), transposed operands, a batch and
    a fused bias + relu epilogue, through the GLSL GEMM (not the loop kernel)."""
    rng = np.random.default_rng(5)
    m, k, n = 7, 13, 21
    a_val = rng.normal(size=(3, k, m) if a_t else (3, m, k)).astype(np.float32)
    b_val = rng.normal(size=(3, n, k) if b_t else (3, k, n)).astype(np.float32)
    bias_val = rng.normal(size=n).astype(np.float32)
    a = gc.placeholder(a_val.shape, "float32", name="a")
    b = gc.placeholder(b_val.shape, "float32", name="b")
    bias = gc.placeholder((n,), "float32", name="bias")
    left = gc.transpose(a, (0, 2, 1)) if a_t else a
    right = gc.transpose(b, (0, 2, 1)) if b_t else b
    fn = gc.function([a, b, bias], [gc.relu(left @ right + bias)], device=vk_device)
    assert any("gemm_a" in k.source for k in fn.compiled.kernels)
    want = np.maximum((a_val.transpose(0, 2, 1) if a_t else a_val)
                      @ (b_val.transpose(0, 2, 1) if b_t else b_val) + bias_val, 0)
    np.testing.assert_allclose(fn(a_val, b_val, bias_val)[0], want, rtol=1e-5, atol=1e-5)


def test_a_guarded_load_at_a_negative_constant_index_compiles(vk_device):
    """hypothesis found it: the gradient of maximum(concatenate([p, p]), p) by p sums the
    concatenation's two halves at constant indices, the second one loading b[i - 1] under
    a condition that fails at i = 0; glslang refuses a constant negative subscript even
    there, so such indices are clamped."""
    p0 = gc.placeholder((1, 1, 1), "float32", name="p0")
    (g,) = gc.grad(gc.sum(gc.maximum(gc.concatenate([p0, p0], axis=0), p0)), [p0])
    fn = gc.function([p0], [g], device=vk_device)
    feed = np.full((1, 1, 1), 0.5, np.float32)
    np.testing.assert_allclose(fn(feed)[0], gc.interpret([g], {p0: feed})[0])


def test_the_html_report_shows_the_glsl_source(vk_device, tmp_path):
    x = gc.placeholder((16,), "float32", name="x")
    fn = gc.function([x], [gc.tanh(x) * 3.0], device=vk_device)
    path = gc.report(fn, {x: np.ones(16, np.float32)}, path=tmp_path / "report.html")
    text = path.read_text()
    assert "void main()" in text and "GRAPHC_GID" in text
