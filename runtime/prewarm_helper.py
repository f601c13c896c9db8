"""The helper process of runtime/prewarm.py: `python -m graphc.runtime.prewarm_helper JOB`.

It reads the job (the plan as export data, its source, the device), builds the program (found
in PoCL's cache: the parent built it), allocates zero-filled buffers of the plan's sizes and
launches the chosen kernels one at a time, so that PoCL compiles their work-group functions
into its cache folder, which the parent's PoCL reads at their first launch. It stops after its
current launch when its stdin closes, and exits 1 on any error (the parent never waits for it).
"""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from .prewarm import JOB_FILE, SOURCE_FILE


def _watch_stdin(stop: threading.Event) -> None:
    """Set `stop` when stdin closes (the parent is done with its first call, or gone)."""
    try:
        while sys.stdin.buffer.read(1 << 12):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def _job_device(wanted: dict) -> Any:
    """The job's device, found on its own platform only (enumerating every platform costs
    0.2 s: Oclgrind's start-up); None when it is not there."""
    from ._opencl import require_cl
    from .device import make_device
    cl = require_cl()
    for platform in cl.get_platforms():
        if platform.name.strip() != wanted["platform"]:
            continue
        for cl_device in platform.get_devices():
            if cl_device.name.strip() == wanted["name"]:
                return make_device(wanted["index"], cl_device, platform)
    return None


def run_job(folder: Path, stop: threading.Event) -> int:
    """Build the job's plan on its device and launch its chosen kernels in order on zero-filled
    buffers of their own, until `stop` is set; how many were launched."""
    import numpy as np

    from .executable import Executable
    from .export_format import plan_from_data
    from .resident import ResidentArray

    job = json.loads((folder / JOB_FILE).read_text())
    plan = plan_from_data(job["plan"], (folder / SOURCE_FILE).read_text(), str(folder))
    device = _job_device(job["device"])
    if device is None:
        return 0
    with device.lock:
        variables = {b.name: ResidentArray(device, np.zeros(b.shape, b.dtype), b.name)
                     for b in plan.variables}
    executable = Executable(device, plan, variables)
    launched = 0
    for index in job["order"]:
        if stop.is_set():
            break
        executable.run_launch(int(index))
        launched += 1
    return launched


def main(argv: list[str]) -> int:
    """`python -m graphc.runtime.prewarm_helper JOB_FOLDER`: run the job, exit 0 (1 on an error)."""
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        run_job(Path(argv[0]), stop)
    except Exception:       # a helper's failure costs nothing but its own work
        return 1
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))
