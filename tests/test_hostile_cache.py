"""Hostile compile-cache entries: every damaged, foreign or misplaced entry is refused before
the driver sees it, set aside as `<entry>.bad` with a warning saying why, and the program is
rebuilt from source (right results) and stored again; concurrent processes loading one entry
never crash; an unwritable cache folder is named. The table of damaged entries and its test
live in tests/test_hostile_files.py; this module runs them in a child process.

The driver may crash on a bad binary (PoCL: SIGSEGV/SIGABRT), so every case runs in a child
process: a crash fails these tests instead of killing pytest. POCL_KERNEL_CACHE=0 in the
children, so graphc's own binary cache is the one used.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from test_hostile_files import CACHE_CASES as CASES, DRIVER_MUST_REFUSE, HEADER

pytestmark = pytest.mark.opencl

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 3.0
KERNEL = """
__kernel void scale(__global float *x) {{
    const int i = get_global_id(0);
    x[i] = x[i] * {factor}f + 1.0f;     // {salt}
}}
"""


# ---- the child: one process runs every case ----

class Kit:
    """What the corruptions need to forge entries for this device."""

    def __init__(self, device, digest: str, other_entry: bytes):
        from graphc.runtime import cache_entry, program_cache
        self.identity = program_cache.entry_identity(device, digest)
        self.pack = cache_entry.pack
        self.other_entry = other_entry

    def payload(self, data: bytes) -> bytes:
        (id_length,) = struct.unpack_from("<I", data, 12)
        return data[HEADER + id_length:]


def run_scale(device, program, factor: float) -> bool:
    """Run the kernel on 1000 floats; True when it computed x * factor + 1."""
    import numpy as np
    import pyopencl as cl
    x = np.arange(1000, dtype=np.float32)
    buf = cl.Buffer(device.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                    hostbuf=x)
    kernel = cl.Kernel(program, "scale")
    kernel.set_arg(0, buf)
    cl.enqueue_nd_range_kernel(device.queue, kernel, (1000,), (8,))
    out = np.empty_like(x)
    cl.enqueue_copy(device.queue, out, buf, is_blocking=True)
    return bool(np.array_equal(out, x * np.float32(factor) + np.float32(1.0)))


def build(device, source: str):
    """Build `source` (no memory-cache hit: nothing holds an earlier program); the program,
    where it came from, and the warnings raised."""
    import gc
    import warnings
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = device.build(source)
    return program, device.build_stats[-1], [str(w.message) for w in caught]


def one_case(device, path: Path, good: bytes, kit: Kit, name: str, source: str) -> dict:
    """Damage the (good) entry at `path` as case `name` says, then build its program."""
    from graphc.runtime import cache_entry, program_cache
    shutil.rmtree(path, ignore_errors=True)                 # the previous case's leftovers
    bad = path.with_name(path.name + ".bad")
    shutil.rmtree(bad, ignore_errors=True)
    bad.unlink(missing_ok=True)
    path.write_bytes(good)
    program_cache._WARNED.clear()       # each case's warning, though every case uses `path`
    corrupt, _ = CASES[name]
    corrupt(path, good, kit)
    program, after, warned = build(device, source)
    right = run_scale(device, program, FACTOR)
    del program
    stored = cache_entry.read(path, kit.identity) is not None
    again, next_record, _ = build(device, source)
    return {"origin": after.cache, "warnings": warned, "right": right, "stored": stored,
            "set_aside": bad.exists(), "next": next_record.cache,
            "next_right": run_scale(device, again, FACTOR)}


def child_main(cache: str) -> None:
    """Build one program (its entry is the one every case damages) and another (whose entry
    one case copies over it), then run the cases; one JSON line per case."""
    from graphc.runtime import select_device
    device = select_device()
    source = KERNEL.format(factor=FACTOR, salt=uuid.uuid4())
    other_source = KERNEL.format(factor=FACTOR, salt=uuid.uuid4())
    (_, record, _), (_, other, _) = build(device, source), build(device, other_source)
    path = Path(cache) / f"{record.digest}.bin"
    kit = Kit(device, record.digest, (Path(cache) / f"{other.digest}.bin").read_bytes())
    good = path.read_bytes()
    for name in CASES:
        if name == DRIVER_MUST_REFUSE and "portable computing" not in \
                device.platform_name.lower():
            print(json.dumps({name: {"skip": f"{device.platform_name} may crash on it"}}))
            continue
        print(json.dumps({name: one_case(device, path, good, kit, name, source)}), flush=True)


def child_env(cache: Path, **extra: str) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), POCL_KERNEL_CACHE="0")
    env.update(extra)
    env.pop("GRAPHC_DEBUG", None)
    return env


def run_python(code: str, env: dict, timeout: int = 300, prefix: list | None = None):
    return subprocess.run([*(prefix or []), sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_hostile_cache
test_hostile_cache.child_main({cache!r})
"""


def run_table(cache: Path) -> dict:
    """Every case's outcome, from one child process; "__exit__": its exit code and stderr."""
    code = CHILD.format(tests=str(Path(__file__).parent), cache=str(cache))
    done = run_python(code, child_env(cache, POCL_CACHE_DIR=str(cache.parent / "pocl")))
    outcomes = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            outcomes.update(json.loads(line))
    outcomes["__exit__"] = (done.returncode, done.stderr[-3000:])
    return outcomes


# ---- concurrent loads of one entry ----

LOADER = """
import gc, json, sys
sys.path.insert(0, {tests!r})
from test_hostile_cache import run_scale
from graphc.runtime import select_device
device = select_device()
source = sys.stdin.read()
origins, right = [], 0
for round in range({rounds}):
    program = device.build(source)
    origins.append(device.build_stats[-1].cache)
    right += run_scale(device, program, 3.0)
    del program
    gc.collect()                    # release it: PoCL deletes the program's build folder
print(json.dumps({{"origins": sorted(set(origins)), "right": right}}))
"""


@pytest.mark.slow
def test_four_processes_loading_one_entry_at_once_never_crash(cl_device, tmp_path):
    """4 processes x 20 rounds of load, launch, release of one cached program."""
    processes, rounds = 4, 20
    cache = tmp_path / "kernels"
    env = child_env(cache, POCL_CACHE_DIR=str(tmp_path / "pocl"))
    source = KERNEL.format(factor=3.0, salt=uuid.uuid4())
    code = LOADER.format(tests=str(Path(__file__).parent), rounds=rounds)
    first = subprocess.run([sys.executable, "-c", code.replace(f"range({rounds})", "range(1)")],
                           cwd=ROOT, env=env, input=source, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    assert len(list(cache.glob("*.bin"))) == 1
    children = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    for child in children:
        child.stdin.write(source)
        child.stdin.close()
    results = [(child.wait(timeout=600), child.stdout.read(), child.stderr.read())
               for child in children]
    crashed = [(code, err[-500:]) for code, _, err in results if code != 0]
    assert crashed == [], f"{len(crashed)} of {processes} processes crashed: {crashed}"
    for _, out, _ in results:
        assert json.loads(out.splitlines()[-1]) == {"origins": ["disk"], "right": rounds}


# ---- unwritable folders ----

def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix running its command with `folder` read-only: a read-only bind mount
    in a private mount namespace for root (whom permissions do not stop), else chmod."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare(1): cannot make a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without mount namespaces: cannot make a folder read-only")
    return ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"',
            "sh"]


COMPILE_AND_RUN = """
import warnings
import numpy as np
import graphc as gc
warnings.simplefilter("always")
x = gc.placeholder((5,), gc.float32, name="x")
for k in (2.0, 3.0):
    fn = gc.function([x], [x * k + 1.0])
    assert np.array_equal(fn(np.arange(5, dtype=np.float32))[0], np.arange(5) * k + 1)
print("ran")
"""


def test_a_read_only_graphc_cache_folder_warns_once_and_builds_uncached(cl_device, tmp_path):
    cache = tmp_path / "kernels"
    cache.mkdir()
    env = child_env(cache, POCL_CACHE_DIR=str(tmp_path / "pocl"))
    done = run_python(COMPILE_AND_RUN, env, prefix=read_only_prefix(cache))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ran")
    assert done.stderr.count("CacheWarning") == 1, done.stderr
    assert f"cannot write the program cache folder {str(cache)!r}" in done.stderr
    assert "GRAPHC_CACHE_DIR" in done.stderr
    assert list(cache.iterdir()) == []


def test_a_graphc_cache_path_under_a_file_warns_and_builds_uncached(cl_device, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = child_env(blocker / "kernels", POCL_CACHE_DIR=str(tmp_path / "pocl"))
    done = run_python(COMPILE_AND_RUN, env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("CacheWarning") == 1, done.stderr
    assert f"cannot write the program cache folder {str(blocker / 'kernels')!r}" in done.stderr


READ_ONLY_POCL = """
import numpy as np
import graphc as gc
x = gc.placeholder((5,), gc.float32, name="x")
try:
    gc.function([x], [x * 2.0 + 1.0])
except gc.DeviceError as err:
    print("DeviceError:", err)
"""


def test_a_read_only_pocl_cache_folder_is_a_device_error_naming_it(cl_device, tmp_path):
    if "portable computing" not in cl_device.platform_name.lower():
        pytest.skip("PoCL's cache folder")
    pocl = tmp_path / "pocl"
    pocl.mkdir()
    for setting in ("0", "1"):
        env = child_env(tmp_path / "kernels", POCL_CACHE_DIR=str(pocl),
                        POCL_KERNEL_CACHE=setting)
        done = run_python(READ_ONLY_POCL, env, prefix=read_only_prefix(pocl))
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert text.startswith("DeviceError: cannot build on "), (text, done.stderr)
        assert f"PoCL cannot write its cache folder {str(pocl)!r}" in text
        assert "POCL_CACHE_DIR" in text and "kernel source" not in text


def test_pocl_without_a_cache_folder_says_why_it_has_no_device(cl_device, tmp_path):
    """PoCL offers no device at all when it cannot create its cache folder."""
    if "portable computing" not in cl_device.platform_name.lower():
        pytest.skip("PoCL's cache folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = child_env(tmp_path / "kernels", POCL_CACHE_DIR=str(blocker / "pocl"))
    done = run_python("import graphc as gc; gc.devices()", env)
    assert done.returncode == 0, done.stderr
    assert "the PoCL platform has no device: PoCL cannot write its cache folder " \
           f"{str(blocker / 'pocl')!r}" in done.stderr
