"""Cold start on PoCL: a second process compiles the kernels a cold first call will need.

PoCL compiles a program in two stages: clBuildProgram (the whole source to LLVM bitcode), then,
at each kernel's first launch, its work-group function (0.06-0.33 s per kernel on a Zen4 core;
a training step has 11-24 of them). Every stage in a process holds one process-wide lock (PoCL
3.1's kernelCompilerLock): two builds in two threads, even in two contexts, took as long as one
after the other (measured: 1.35 s against 2 x 0.68 s), so threads cannot build in parallel.
Processes can: PoCL's kernel cache is a folder (POCL_CACHE_DIR) that processes share, written
through temporary files and renames, and a kernel's work-group function found there is loaded
instead of compiled.

So when a build was cold (slow), the executable starts a helper process (`python -m
graphc.runtime.prewarm_helper JOB`, runtime/prewarm_helper.py) that builds the same program (a hit in PoCL's cache by then),
allocates zero-filled buffers of the plan's sizes and launches each distinct kernel once, last
launch first, while this process runs its first call from the first launch on: the two meet in
the middle, each compiling half. The helper never touches this process's buffers; what it leaves
is only what PoCL would have written itself. It stops after its current launch when this
process's first call is done or this process ends (its stdin closes), and on any error.

Only for PoCL with its kernel cache on (with POCL_KERNEL_CACHE=0 nothing is shared), plans
without host calls, with at least MIN_KERNELS distinct kernels and at most MAX_BYTES of buffers.
GRAPHC_PREWARM=0 turns it off, =1 starts it whenever it can (tests), unset: after a build of
at least MIN_BUILD_SECONDS (a warm build, found in PoCL's cache, takes milliseconds) while the
load average leaves a core free (on a saturated machine the helper's work only competes).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pocl

if TYPE_CHECKING:
    from .device import Device
    from .launch import Plan

ENV = "GRAPHC_PREWARM"
MIN_KERNELS = 3
MIN_BUILD_SECONDS = 0.2
MAX_BYTES = 256 << 20
HELPER_MODULE = "graphc.runtime.prewarm_helper"
JOB_FILE = "job.json"
SOURCE_FILE = "program.cl"


def distinct_launches(plan: Plan) -> list[int]:
    """Indices of the first launch of each (kernel, local size) that has work items: what
    PoCL compiles one work-group function for."""
    seen, chosen = set(), []
    for index, launch in enumerate(plan.launches):
        key = (launch.name, launch.local_size)
        if key not in seen and 0 not in launch.global_size:
            seen.add(key)
            chosen.append(index)
    return chosen


def wanted(device: Device, plan: Plan, build_seconds: float) -> bool:
    """Would a helper help this executable's first call (see the module's text)?"""
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in ("0", "no", "off", "false") or not sys.executable:
        return False
    if not (pocl.is_pocl(device) and pocl.kernel_cache_on()) or plan.host_calls:
        return False
    if len(distinct_launches(plan)) < MIN_KERNELS or _plan_bytes(plan) > MAX_BYTES:
        return False
    if setting in ("1", "yes", "on", "true"):
        return True
    return build_seconds >= MIN_BUILD_SECONDS and _core_free()


def _core_free() -> bool:
    """Is a core left for the helper? The load average (this process counting as one)
    below the cores less one: on a busy machine a helper only adds work (measured: a
    saturated 2-core machine ran MLP's cold first step 6.0 s without, 6.7 s with it)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load <= (os.cpu_count() or 1) - 1


def _plan_bytes(plan: Plan) -> int:
    from .launch import binding_nbytes
    return sum(b.nbytes for b in plan.buffers if not b.parent) + \
        sum(binding_nbytes(b) for b in plan.variables)


class Helper:
    """A running helper process; stop() (idempotent) lets it finish its launch and exit."""

    def __init__(self, process: subprocess.Popen, folder: str) -> None:
        self.process = process
        self._folder = folder

    def stop(self) -> None:
        """Close the helper's stdin (it exits after its current launch) and remove the job."""
        stdin, self.process.stdin = self.process.stdin, None
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass
        shutil.rmtree(self._folder, ignore_errors=True)


_RUNNING: list[Helper] = []     # helpers started by this process (one at a time)


def helper_running() -> bool:
    """Is a helper this process started still running? (Then no second one starts: a loop
    compiling many functions would otherwise start one per function, each a process busy
    compiling.)"""
    _RUNNING[:] = [h for h in _RUNNING if h.process.poll() is None]
    return bool(_RUNNING)


def start(device: Device, plan: Plan) -> Helper | None:
    """Start a helper for `plan` on `device`; None when it cannot be started, or another
    helper of this process still runs (no harm done: the first call then compiles every
    kernel itself)."""
    from .export_format import plan_to_data
    if helper_running():
        return None
    folder = ""
    try:
        folder = tempfile.mkdtemp(prefix="graphc-prewarm-")
        job = {"device": {"index": device.index, "name": device.name,
                          "platform": device.platform_name},
               "plan": plan_to_data(plan), "order": distinct_launches(plan)[::-1]}
        Path(folder, JOB_FILE).write_text(json.dumps(job))
        Path(folder, SOURCE_FILE).write_text(plan.source)
        env = dict(os.environ, **{ENV: "0"})
        process = subprocess.Popen([sys.executable, "-m", HELPER_MODULE, folder],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env, close_fds=True)
    except (OSError, ValueError, subprocess.SubprocessError):
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        return None
    helper = Helper(process, folder)
    _RUNNING.append(helper)
    return helper
