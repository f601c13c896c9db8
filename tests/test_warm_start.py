"""Warm start: a new process compiling the same function loads the program binary from the
disk cache instead of building it from source.

Speed is not asserted here (bench/warm_start.py measures cold vs warm seconds); these tests
assert the mechanism: the first process builds from source ('miss') and writes the binary
under $GRAPHC_CACHE_DIR, a second process with the same folder gets a 'disk' hit and builds
nothing from source, and both compute the same numbers. PoCL's own kernel cache is switched
off (POCL_KERNEL_CACHE=0) so that only graphc's cache can make the second start warm.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.opencl

ROOT = Path(__file__).resolve().parents[1]

# A small MLP training step (the benchmark's 784-512-512-10 shape, scaled down), compiled
# in a fresh process; prints what the device's program cache did, as JSON.
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc

    batch, dims = int(sys.argv[1]), (16, 12, 12, 10)
    rng = np.random.default_rng(0)
    x = gc.placeholder((batch, dims[0]), gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    params, h = [], x
    for i, (m, n) in enumerate(zip(dims, dims[1:])):
        W = gc.variable((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32),
                        name=f"W{i}")
        b = gc.variable(np.zeros(n, np.float32), name=f"b{i}")
        params += [W, b]
        h = h @ W + b
        if i < len(dims) - 2:
            h = gc.relu(h)
    loss = gc.mean(-gc.sum(gc.one_hot(y, dims[-1]) * gc.log_softmax(h, axis=-1), axis=-1))
    grads = gc.grad(loss, params)
    step = gc.function([x, y], [loss], updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
    xs = rng.standard_normal((batch, dims[0])).astype(np.float32)
    ys = rng.integers(0, dims[-1], batch).astype(np.int32)
    losses = [float(step(xs, ys)[0]) for _ in range(2)]
    print(json.dumps({"builds": [[r.cache, r.digest, r.seconds] for r in step.device.build_stats],
                      "losses": losses, "compile_seconds": step.compile_seconds,
                      "kernels": step.kernel_count}))
""")


def compile_in_fresh_process(tmp_path: Path, cache: Path, batch: int = 8) -> dict:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), POCL_KERNEL_CACHE="0")
    env.pop("GRAPHC_DEBUG", None)
    done = subprocess.run([sys.executable, str(script), str(batch)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def origins(report: dict) -> list[str]:
    return [cache for cache, _, _ in report["builds"]]


@pytest.fixture(scope="module")
def cold(cl_device, tmp_path_factory) -> tuple[Path, dict]:
    """A cache folder filled by one cold process, and that process's report."""
    tmp = tmp_path_factory.mktemp("cold")
    folder = tmp / "kernels"
    assert not folder.exists()
    return folder, compile_in_fresh_process(tmp, folder)


@pytest.fixture
def cache(cold, tmp_path) -> Path:
    """A private copy of the cold process's cache folder."""
    folder = tmp_path / "kernels"
    shutil.copytree(cold[0], folder)
    return folder


def test_first_process_builds_from_source_and_stores_the_binary(cold):
    folder, report = cold
    assert origins(report) == ["miss"]
    digest = report["builds"][0][1]
    assert [p.name for p in folder.glob("*.bin")] == [f"{digest}.bin"]
    assert (folder / f"{digest}.bin").stat().st_size > 0


def test_second_process_loads_the_program_from_the_disk_cache(cold, tmp_path, cache):
    first = cold[1]
    warm = compile_in_fresh_process(tmp_path, cache)
    assert origins(warm) == ["disk"]
    assert warm["builds"][0][1] == first["builds"][0][1]
    assert warm["kernels"] == first["kernels"]
    assert warm["losses"] == first["losses"]
    assert warm["losses"][1] < warm["losses"][0]            # the step trains
    print(f"\ncompile seconds: cold {first['compile_seconds']:.3f}, warm "
          f"{warm['compile_seconds']:.3f} (program build {first['builds'][0][2]:.3f} s from "
          f"source, {warm['builds'][0][2]:.3f} s from disk)")


def test_a_different_function_misses_the_warm_cache(tmp_path, cache):
    other = compile_in_fresh_process(tmp_path, cache, batch=4)
    assert origins(other) == ["miss"]
    assert len(list(cache.glob("*.bin"))) == 2


def test_a_corrupt_cached_binary_is_rebuilt_from_source(cold, tmp_path, cache):
    path = cache / f"{cold[1]['builds'][0][1]}.bin"
    path.write_bytes(b"not a binary")
    again = compile_in_fresh_process(tmp_path, cache)
    assert origins(again) == ["miss"]
    assert again["losses"] == cold[1]["losses"]
    assert path.read_bytes() != b"not a binary"


def test_same_function_twice_in_one_process_hits_memory(cl_device, tmp_path):
    """Within a process the second compile of the same source is a memory hit."""
    script = tmp_path / "twice.py"
    script.write_text(textwrap.dedent("""
        import json
        import numpy as np
        import graphc as gc
        x = gc.placeholder((4, 5), gc.float32, name="x")
        fns = [gc.function([x], [gc.relu(x * 2.0 + 1.0)]) for _ in range(2)]
        print(json.dumps([r.cache for r in fns[0].device.build_stats]))
    """))
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "kernels"), POCL_KERNEL_CACHE="0")
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["miss", "memory"]
