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

While PoCL's own kernel cache is on, graphc's disk cache is not used: asking PoCL for a binary
compiles every kernel a second time (a generic work-group function besides the one specialized
for its launch geometry at first launch), which cost as long as the first step's own compiles
(MLP step: 2.5 s of a 5.1 s cold start), and PoCL's cache already makes the next process's
build and launches warm. With POCL_KERNEL_CACHE=0, and on every other driver, it is.

Nothing read from disk reaches the driver unchecked (a damaged binary can crash it): entries
carry a checksum and the identity of what they were built for (runtime/cache_entry.py); a
bad entry, or one the driver rejects, is quarantined (`*.bad`) with a warning, and the
program is built from source. An unwritable cache folder costs a warning (CacheWarning)
naming it, and builds go on uncached; an unwritable PoCL cache folder, which fails every PoCL
build, is a DeviceError naming it.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cache_entry, pocl
from ._opencl import require_cl
from .errors import DeviceError, compile_error

if TYPE_CHECKING:
    from .device import Device

CACHE_ENV = "GRAPHC_CACHE_DIR"
POCL_CACHE_ENV = pocl.KERNEL_CACHE_ENV
_MEMORY_LOCK = threading.Lock()     # the per-device weak dicts of built programs
_WARNED: set = set()                # (kind, path) already warned about in this process


class CacheWarning(UserWarning):
    """The disk cache of programs could not be used as it should (the build goes on)."""


@dataclass(frozen=True)
class BuildRecord:
    """One call to Device.build: where the program came from and how long it took."""

    digest: str
    cache: str  # 'memory' | 'disk' | 'export' (an export's binary) | 'miss' (from source)
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
    """Build from the cached entry when it verifies and loads, else from source and store."""
    if driver_caches_binaries(device):
        return require_cl().Program(_build_from_source(device, source, options)), "miss"
    path = cache_dir() / f"{digest}.bin"
    identity = entry_identity(device, digest)
    program = _load_entry(device, path, identity, options)
    if program is not None:
        return program, "disk"
    raw = _build_from_source(device, source, options)
    _store_entry(path, identity, _program_binary(raw))
    return require_cl().Program(raw), "miss"


def export_entry(device: Device, source: str, options: str, program: Any) -> bytes | None:
    """A checked entry (runtime/cache_entry.py) holding built `program`'s binary, for an
    export to carry; None where the driver keeps its own binaries (asking PoCL for one
    compiles every kernel again) or gives none."""
    if driver_caches_binaries(device):
        return None
    binary = _program_binary(program)
    if not binary:
        return None
    digest = cache_key(device, source, options)
    return cache_entry.pack(entry_identity(device, digest), binary)


def adopt_export_entry(device: Device, source: str, options: str, entry: bytes) -> Any | None:
    """The program of an export's entry when it was built from this source for this very
    device, driver and platform (checked as disk entries are), now in the device's memory
    cache so that building the source finds it; None for another device, a damaged entry,
    or a binary the driver refuses (the source is then built as usual)."""
    start = time.perf_counter()
    digest = cache_key(device, source, options)
    try:
        binary = cache_entry.unpack(entry, entry_identity(device, digest))
    except cache_entry.CorruptEntry:
        return None
    program = _build_from_binary(device, binary, options)
    if program is None:
        return None
    with _MEMORY_LOCK:
        device._programs[(source, options)] = program
    device.build_stats.append(BuildRecord(digest, "export", time.perf_counter() - start))
    return program


def driver_caches_binaries(device: Device) -> bool:
    """True when the driver keeps its own binaries across processes: PoCL with its kernel
    cache on (its default; POCL_KERNEL_CACHE=0 turns it off). graphc's disk cache is then
    neither read nor written for the device."""
    return pocl.is_pocl(device) and pocl.kernel_cache_on()


def entry_identity(device: Device, digest: str) -> bytes:
    """What an entry must have been built for: its key, and the device, driver, platform
    and pyopencl versions (stored in, and compared with, every entry's header)."""
    fields = {"key": digest, "device": device.name, "driver": device.driver_version,
              "platform": device.platform_name, "platform version": device.platform_version,
              "pyopencl": require_cl().VERSION_TEXT}
    return json.dumps(fields).encode()


def _load_entry(device: Device, path: Path, identity: bytes, options: str) -> Any | None:
    """The program of a verified entry; None (after quarantining a bad entry) otherwise."""
    try:
        binary = cache_entry.read(path, identity)
    except cache_entry.CorruptEntry as err:
        _set_aside(path, f"refused: {err}")
        return None
    if binary is None:
        return None
    program = _build_from_binary(device, binary, options)
    if program is None:
        _set_aside(path, "the driver rejected its binary")
    return program


def _set_aside(path: Path, why: str) -> None:
    """Quarantine a bad entry, and say so once per process (the build goes on from source)."""
    moved = cache_entry.quarantine(path)
    where = f"moved to {moved.name}" if moved else "deleted" if not path.exists() else \
        "could not be moved (the folder is not writable)"
    _warn_once(("bad", str(path)), f"graphc: cache entry {str(path)!r} {why}; {where}; "
                                   f"building from source")


def _store_entry(path: Path, identity: bytes, binary: bytes) -> None:
    """Write the entry; an unwritable cache folder costs a warning and a rebuild next time."""
    if not binary:
        return
    try:
        cache_entry.write(path, identity, binary)
    except OSError as err:
        _warn_once(("write", str(path.parent)),
                   f"graphc: cannot write the program cache folder {str(path.parent)!r} "
                   f"({err.strerror or err}); programs are built without being cached "
                   f"there. Make it writable or set ${CACHE_ENV} to a writable folder.")


def _warn_once(key: tuple, text: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(text, CacheWarning, stacklevel=4)


def _build_from_source(device: Device, source: str, options: str) -> Any:
    """Compile `source` for the device; a failure raises CompileError with log and source."""
    ocl = require_cl()
    raw = ocl._Program(device.context, source)
    try:
        raw.build(options.encode(), [device.cl_device])
    except ocl.Error as err:
        _raise_if_driver_cannot_write(device)
        log = _build_log(raw, device)
        raise compile_error(device.name, options, log, source, _error_reason(err)) from None
    return raw


def _raise_if_driver_cannot_write(device: Device) -> None:
    """A build failing because PoCL cannot write its cache folder is the folder's fault,
    not the source's: say so (DeviceError naming the folder) instead of the source."""
    if pocl.is_pocl(device):
        problem = pocl.unwritable_folder_problem()
        if problem:
            raise DeviceError(f"cannot build on {device.describe()}: {problem}")


def _build_from_binary(device: Device, binary: bytes, options: str) -> Any | None:
    """Load a verified binary; None when the driver rejects it (the caller rebuilds)."""
    ocl = require_cl()
    if pocl.is_pocl(device):
        binary = pocl.private_binary(binary)    # its own build folder (see runtime/pocl.py)
    try:
        raw = ocl._Program(device.context, [device.cl_device], [binary])
        raw.build(options.encode(), [device.cl_device])
    except ocl.Error:
        _raise_if_driver_cannot_write(device)
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


# The Vulkan backend's SPIR-V and pipeline caches store and set aside entries alike.
store_entry, set_aside = _store_entry, _set_aside
