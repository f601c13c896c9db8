"""Cold start on PoCL: the helper process that compiles kernels into PoCL's shared cache
(runtime/prewarm.py). Speed is not asserted (bench/*.py --first-step measures it); these tests
assert the mechanism: when a helper is started and when not, that it compiles every distinct
kernel of the plan into the PoCL cache folder it is given, that it stops when told, that a
broken job costs nothing but its own exit status, and that a first call with a helper running
beside it computes what the interpreter does."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import prewarm

pytestmark = pytest.mark.opencl


def _mlp_step():
    """A small training step with several distinct kernels (GEMMs with different epilogues,
    the loss), and what it computes in the interpreter."""
    rng = np.random.default_rng(3)
    x = gc.placeholder((6, 5), gc.float32, name="x")
    W1 = gc.variable(rng.standard_normal((5, 7)).astype(np.float32), name="pw1")
    W2 = gc.variable(rng.standard_normal((7, 3)).astype(np.float32), name="pw2")
    h = gc.relu(x @ W1)
    loss = gc.mean(gc.square(h @ W2))
    g1, g2 = gc.grad(loss, [W1, W2])
    outputs = [loss, g1, g2]
    xs = rng.standard_normal((6, 5)).astype(np.float32)
    expected = gc.interpret(outputs, {x: xs})
    return x, outputs, xs, expected


def _needs_pocl_cache(device) -> None:
    if not (prewarm.pocl.is_pocl(device) and prewarm.pocl.kernel_cache_on()):
        pytest.skip("the helper only runs for PoCL with its kernel cache on")


def _wait(process: subprocess.Popen, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        pytest.fail("the helper did not exit")
    return process.returncode


def test_first_call_with_a_helper_matches_the_interpreter(cl_device, monkeypatch):
    _needs_pocl_cache(cl_device)
    monkeypatch.setenv(prewarm.ENV, "1")
    x, outputs, xs, expected = _mlp_step()
    fn = gc.function([x], outputs)
    helper = fn.executable._prewarm
    assert helper is not None, "GRAPHC_PREWARM=1 on PoCL starts a helper"
    got = fn(xs)
    for ours, ref in zip(got, expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert fn.executable._prewarm is None and helper.process.stdin is None, \
        "the first call stops the helper"
    assert _wait(helper.process) in (0, 1)


def test_no_helper_when_switched_off_or_without_pocl_cache(cl_device, monkeypatch):
    x, outputs, _, _ = _mlp_step()
    monkeypatch.setenv(prewarm.ENV, "0")
    plan = gc.function([x], outputs).executable.plan
    assert not prewarm.wanted(cl_device, plan, 10.0)
    monkeypatch.setenv(prewarm.ENV, "1")
    assert prewarm.wanted(cl_device, plan, 0.0) == (
        prewarm.pocl.is_pocl(cl_device) and prewarm.pocl.kernel_cache_on())
    monkeypatch.setenv(prewarm.pocl.KERNEL_CACHE_ENV, "0")
    assert not prewarm.wanted(cl_device, plan, 10.0), "nothing shared with PoCL's cache off"


def test_few_kernels_or_a_warm_build_start_no_helper(cl_device, monkeypatch):
    _needs_pocl_cache(cl_device)
    x = gc.placeholder((4,), gc.float32, name="x")
    small = gc.function([x], [x * 2.0 + 1.0]).executable.plan
    x, outputs, _, _ = _mlp_step()
    plan = gc.function([x], outputs).executable.plan     # compiled without a helper
    monkeypatch.delenv(prewarm.ENV, raising=False)          # the default: decided by build time
    assert len(prewarm.distinct_launches(small)) < prewarm.MIN_KERNELS
    assert not prewarm.wanted(cl_device, small, 10.0)
    assert not prewarm.wanted(cl_device, plan, 0.01), "a build found in PoCL's cache is warm"


def test_distinct_launches_name_each_kernel_and_local_size_once(cl_device):
    x, outputs, _, _ = _mlp_step()
    plan = gc.function([x], outputs).executable.plan
    chosen = prewarm.distinct_launches(plan)
    keys = [(plan.launches[i].name, plan.launches[i].local_size) for i in chosen]
    assert len(keys) == len(set(keys))
    assert set(keys) == {(launch.name, launch.local_size) for launch in plan.launches
                         if 0 not in launch.global_size}


def test_the_helper_compiles_every_kernel_into_the_pocl_cache(cl_device, tmp_path, monkeypatch):
    _needs_pocl_cache(cl_device)
    x, outputs, _, _ = _mlp_step()
    plan = gc.function([x], outputs).executable.plan
    monkeypatch.setenv(prewarm.pocl.CACHE_DIR_ENV, str(tmp_path / "pocl"))  # the helper's
    helper = prewarm.start(cl_device, plan)
    assert helper is not None
    assert _wait(helper.process) == 0
    compiled = {p.parent.parent.name for p in (tmp_path / "pocl").rglob("*.so")}
    kernels = {plan.launches[i].name for i in prewarm.distinct_launches(plan)}
    assert kernels <= compiled, f"not compiled by the helper: {sorted(kernels - compiled)}"
    helper.stop()
    assert not Path(helper._folder).exists()


def test_a_stopped_helper_exits_and_a_broken_job_fails_quietly(cl_device, tmp_path):
    _needs_pocl_cache(cl_device)
    x, outputs, _, _ = _mlp_step()
    helper = prewarm.start(cl_device, gc.function([x], outputs).executable.plan)
    helper.stop()
    assert _wait(helper.process, 60) in (0, 1)      # 1: its job was removed before it read it
    (tmp_path / prewarm.JOB_FILE).write_text("{not json")
    done = subprocess.run([sys.executable, "-m", prewarm.HELPER_MODULE, str(tmp_path)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                          env=dict(os.environ, **{prewarm.ENV: "0"}))
    assert done.returncode == 1 and not done.stdout


def test_one_helper_at_a_time(cl_device, monkeypatch):
    _needs_pocl_cache(cl_device)
    x, outputs, _, _ = _mlp_step()
    plan = gc.function([x], outputs).executable.plan
    first = prewarm.start(cl_device, plan)
    assert first is not None and prewarm.helper_running()
    assert prewarm.start(cl_device, plan) is None, "a second helper while the first runs"
    first.stop()
    _wait(first.process, 60)
    assert not prewarm.helper_running()
    second = prewarm.start(cl_device, plan)
    assert second is not None
    second.stop()
    _wait(second.process, 60)


def test_no_temporary_folder_means_no_helper_and_no_error(cl_device, monkeypatch, tmp_path):
    _needs_pocl_cache(cl_device)
    x, outputs, xs, expected = _mlp_step()
    def no_folder(**_):
        raise PermissionError(13, "Permission denied", str(tmp_path))
    monkeypatch.setattr(prewarm.tempfile, "mkdtemp", no_folder)
    monkeypatch.setenv(prewarm.ENV, "1")
    fn = gc.function([x], outputs)
    assert fn.executable._prewarm is None
    for ours, ref in zip(fn(xs), expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
