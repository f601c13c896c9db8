"""Program builds for a Device, cached in memory and as binaries on disk.

The in-memory cache (per Device, keyed by source and options) makes a second build of the
same plan free. The disk cache keeps device binaries across processes under
$GRAPHC_CACHE_DIR (default ~/.cache/graphc/kernels), keyed by a sha256 of the source, the
options, and the device, driver, platform and pyopencl versions, so a driver upgrade misses.

pyopencl's own source cache is bypassed on purpose: we build through pyopencl's low-level
`_Program` so that pyopencl neither writes a second copy of every binary nor turns a "cold"
build into a silent hit, which would make `build_stats` (cold vs warm compile benchmarks)
lie. Drivers may still cache internally: PoCL does unless POCL_KERNEL_CACHE=0 is set, which
a benchmark of truly cold compiles should set.

While PoCL's own kernel cache is on, no binary is written: asking PoCL for one compiles every
kernel a second time (a generic work-group function besides the one specialized for its launch
geometry at first launch), which cost as long as the first step's own compiles (MLP step: 2.5
s of a 5.1 s cold start), and PoCL's cache already makes the next process's build and launches
warm. With POCL_KERNEL_CACHE=0, and on every other driver, binaries are written as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._opencl import require_cl
from .errors import compile_error

if TYPE_CHECKING:
    from .device import Device

CACHE_ENV = "GRAPHC_CACHE_DIR"
POCL_CACHE_ENV = "POCL_KERNEL_CACHE"
_MEMORY_LOCK = threading.Lock()     # the per-device weak dicts of built programs


@dataclass(frozen=True)
class BuildRecord:
    """One call to Device.build: where the program came from and how long it took."""

    digest: str
    cache: str  # 'memory' | 'disk' | 'miss' (built from source)
    seconds: float

    @property
    def hit(self) -> bool:
        """True when the program came from a cache rather than a source build."""
        return self.cache != "miss"


def cache_dir() -> Path:
    """The disk cache folder: $GRAPHC_CACHE_DIR, else ~/.cache/graphc/kernels."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "graphc" / "kernels"


def cache_key(device: Device, source: str, options: str) -> str:
    """sha256 of the source, options and everything about the device that shapes a binary."""
    ocl = require_cl()
    fields = [source, options, device.name, device.driver_version, device.platform_name,
              device.platform_version, ocl.VERSION_TEXT]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def build_program(device: Device, source: str, options: str = "") -> Any:
    """Return a built cl.Program, from the memory cache, the disk cache, or the source."""
    start = time.perf_counter()
    with _MEMORY_LOCK:
        program = device._programs.get((source, options))
    if program is not None:
        digest, origin = "", "memory"
    else:
        digest = cache_key(device, source, options)
        program, origin = _build_with_disk_cache(device, source, options, digest)
        with _MEMORY_LOCK:      # held weakly: released with the last executable using it
            device._programs[(source, options)] = program
    device.build_stats.append(BuildRecord(digest, origin, time.perf_counter() - start))
    return program


def _build_with_disk_cache(device: Device, source: str, options: str,
                           digest: str) -> tuple[Any, str]:
    """Build from the cached binary when there is a usable one, else from source and store."""
    path = cache_dir() / f"{digest}.bin"
    binary = _read_binary(path)
    if binary is not None:
        program = _build_from_binary(device, binary, options)
        if program is not None:
            return program, "disk"
    raw = _build_from_source(device, source, options)
    if not driver_caches_binaries(device):
        _write_binary(path, _program_binary(raw))
    return require_cl().Program(raw), "miss"


def driver_caches_binaries(device: Device) -> bool:
    """True when the driver keeps its own binaries across processes: PoCL with its kernel
    cache on (its default; POCL_KERNEL_CACHE=0 turns it off)."""
    if "portable computing" not in device.platform_name.lower():
        return False
    setting = os.environ.get(POCL_CACHE_ENV, "").strip().lower()
    return setting not in ("0", "no", "false", "off")


def _build_from_source(device: Device, source: str, options: str) -> Any:
    """Compile `source` for the device; a failure raises CompileError with log and source."""
    ocl = require_cl()
    raw = ocl._Program(device.context, source)
    try:
        raw.build(options.encode(), [device.cl_device])
    except ocl.Error as err:
        log = _build_log(raw, device)
        raise compile_error(device.name, options, log, source, _error_reason(err)) from None
    return raw


def _build_from_binary(device: Device, binary: bytes, options: str) -> Any | None:
    """Load a cached binary; None when the driver rejects it (the caller rebuilds)."""
    ocl = require_cl()
    try:
        raw = ocl._Program(device.context, [device.cl_device], [binary])
        raw.build(options.encode(), [device.cl_device])
    except ocl.Error:
        return None
    return ocl.Program(raw)


def _build_log(raw: Any, device: Device) -> str:
    """The driver's build log for the device, or a note when it cannot be read."""
    ocl = require_cl()
    try:
        return str(raw.get_build_info(device.cl_device, ocl.program_build_info.LOG))
    except ocl.Error as err:
        return f"(build log unavailable: {err})"


def _error_reason(err: Exception) -> str:
    """A short reason from a pyopencl error, e.g. 'clBuildProgram: BUILD_PROGRAM_FAILURE'."""
    ocl = require_cl()
    code = getattr(err, "code", None)
    try:
        status = ocl.status_code.to_string(code)
    except Exception:  # unknown or missing status codes
        status = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{getattr(err, 'routine', 'build')}: {status}"


def _program_binary(raw: Any) -> bytes:
    """The device binary of a single-device program (b'' when the driver gives none)."""
    ocl = require_cl()
    try:
        binaries = raw.get_info(ocl.program_info.BINARIES)
    except ocl.Error:
        return b""
    return bytes(binaries[0]) if binaries else b""


def _read_binary(path: Path) -> bytes | None:
    """The cached binary at `path`, or None when absent, empty or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data or None


def _write_binary(path: Path, binary: bytes) -> None:
    """Store a binary atomically (temp file in the same folder + os.replace); best effort."""
    if not binary:
        return
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp",
                                         delete=False) as tmp:
            tmp_name = tmp.name
            tmp.write(binary)
        os.replace(tmp_name, path)
    except OSError:  # a read-only or full cache folder only costs a rebuild next time
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
