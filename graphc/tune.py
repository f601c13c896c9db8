"""Autotuning: time candidate kernel parameters, keep the fastest correct one, per device.

`GRAPHC_TUNE=1` makes gc.function tune every GEMM shape it meets that has no cached
choice yet; `graphc tune` tunes the shapes of a benchmark ahead of time. A candidate is
first checked against numpy on random operands: a wrong kernel is rejected (and logged),
never timed, never cached. Winners are stored as JSON per device and driver under the
kernel cache folder, written to a temporary file and renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from graphc.codegen.gemm import DeviceInfo, Epilogue, GemmSpec, device_info_from, gemm_kernel

NP_TYPES = {"float": np.float32, "double": np.float64}
TOLERANCE = {"float": 1e-4, "double": 1e-10}
CPU_CANDIDATES = ({}, {"rows": 4}, {"rows": 8, "order": "rows"}, {"vectors": 1},
                  {"kc": 128}, {"mc": 64}, {"panels": 1})
GPU_CANDIDATES = ({}, {"ts": 8}, {"ts": 16})


@dataclass(frozen=True)
class Trial:
    """One candidate's outcome: seconds (median), or why it was rejected."""

    tuning: dict
    seconds: float | None
    rejected: str | None = None


def tuning_file(device) -> Path:
    """The JSON file of tuned choices for this device and driver, inside the kernel cache
    folder ($GRAPHC_CACHE_DIR/tuning, default ~/.cache/graphc/kernels/tuning)."""
    from graphc.runtime.program_cache import cache_dir
    ident = json.dumps([device.name, device.driver_version, device.platform_name,
                        device.platform_version])
    return cache_dir() / "tuning" / f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def spec_key(spec: GemmSpec) -> str:
    """The cache key of a GEMM shape and layout."""
    return json.dumps(asdict(spec), sort_keys=True)


def cached_tuning(device, spec: GemmSpec) -> dict | None:
    """The tuned parameters of `spec` on `device`, if it was tuned."""
    return _load(tuning_file(device)).get(spec_key(spec))


def tune_gemm(device, spec: GemmSpec, candidates: Iterable[dict] | None = None,
              generate: Callable | None = None, repeats: int = 5) -> list[Trial]:
    """Try every candidate; cache and return the trials (fastest correct one first)."""
    info = device_info_from(device)
    candidates = candidates or (CPU_CANDIDATES if info.type == "cpu" else GPU_CANDIDATES)
    generate = generate or _generate
    a, b, expected = _problem(spec)
    trials = [_trial(device, spec, info, tuning, generate, a, b, expected, repeats)
              for tuning in candidates]
    good = sorted((t for t in trials if t.rejected is None), key=lambda t: t.seconds)
    if good:
        _store(tuning_file(device), spec_key(spec), good[0].tuning)
    return good + [t for t in trials if t.rejected is not None]


def _generate(name: str, spec: GemmSpec, info: DeviceInfo):
    return gemm_kernel(name, spec, Epilogue(), info)


def _problem(spec: GemmSpec):
    rng = np.random.default_rng(0)
    dtype = NP_TYPES[spec.dtype]
    a_rows = spec.batch if spec.a_batch_stride else 1
    b_rows = spec.batch if spec.b_batch_stride else 1
    a = rng.standard_normal((a_rows, spec.m, spec.k)).astype(dtype)
    b = rng.standard_normal((b_rows, spec.k, spec.n)).astype(dtype)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    expected = np.broadcast_to(expected, (spec.batch, spec.m, spec.n))
    a_stored = np.swapaxes(a, 1, 2) if spec.a_trans else a
    b_stored = np.swapaxes(b, 1, 2) if spec.b_trans else b
    return np.ascontiguousarray(a_stored), np.ascontiguousarray(b_stored), expected


def _trial(device, spec, info, tuning, generate, a, b, expected, repeats) -> Trial:
    try:
        kernel = generate("graphc_tune", spec, replace(info, tuning=dict(tuning)))
        result, seconds = _run(device, kernel, a, b, spec, repeats)
    except Exception as exc:                    # a candidate that does not build or run
        return Trial(dict(tuning), None, f"failed: {type(exc).__name__}: {exc}"[:300])
    error = float(np.max(np.abs(result - expected) / (1 + np.abs(expected)), initial=0.0))
    if not np.isfinite(error) or error > TOLERANCE[spec.dtype] * max(1, spec.k) ** 0.5:
        return Trial(dict(tuning), None, f"wrong result: relative error {error:.3g}")
    return Trial(dict(tuning), seconds)


def _run(device, kernel, a, b, spec, repeats):
    import pyopencl as cl
    program = device.build(kernel.source)
    flags = cl.mem_flags
    ctx, queue = device.context, device.queue
    a_buf = cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=a)
    b_buf = cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=b)
    out = np.empty((spec.batch, spec.m, spec.n), a.dtype)
    c_buf = cl.Buffer(ctx, flags.READ_WRITE, out.nbytes)
    run = cl.Kernel(program, kernel.name)
    run.set_args(a_buf, b_buf, c_buf)
    times = []
    for _ in range(repeats):
        event = cl.enqueue_nd_range_kernel(queue, run, kernel.global_size, kernel.local_size)
        event.wait()
        times.append((event.profile.end - event.profile.start) * 1e-9)
    cl.enqueue_copy(queue, out, c_buf, is_blocking=True)
    return out, statistics.median(times)


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _store(path: Path, key: str, tuning: dict) -> None:
    """Add one choice to the JSON file: temporary file, then rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _load(path)
    table[key] = tuning
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(table, stream, indent=1, sort_keys=True)
    os.replace(temporary, path)
