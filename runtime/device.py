"""Devices: OpenCL devices of every platform and Vulkan physical devices (runtime/
vulkan_device.py), their capabilities, selection, buffers. Each device says its `backend`
("opencl" or "vulkan"); the OpenCL ones come first, the Vulkan ones after them."""
from __future__ import annotations

import functools
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

from ._opencl import INSTALL_HINT, cl, require_cl
from .errors import DeviceError
from .limits import format_bytes, too_large_text

DEVICE_ENV = "GRAPHC_DEVICE"

# Lower is preferred: discrete GPU, integrated GPU, accelerator, CPU.
_KIND_RANK = {"discrete gpu": 0, "integrated gpu": 1, "accelerator": 2, "cpu": 3}


@dataclass(eq=False)
class Device:
    """One OpenCL device with its capabilities as plain fields, and a lazy context and queue."""

    index: int
    name: str
    vendor: str
    platform_name: str
    platform_version: str
    type: str  # 'gpu' | 'cpu' | 'accelerator'
    unified_memory: bool
    compute_units: int
    global_mem_size: int
    max_mem_alloc_size: int
    local_mem_size: int
    max_work_group_size: int
    max_work_item_sizes: tuple[int, ...]
    preferred_float_vector_width: int
    fp16: bool
    fp64: bool
    opencl_c_version: tuple[int, int]
    driver_version: str
    extensions: frozenset[str] = field(repr=False)
    cl_device: Any = field(repr=False)
    cl_platform: Any = field(repr=False)
    build_stats: list = field(default_factory=list, repr=False)
    _context: Any = field(default=None, repr=False)
    _queue: Any = field(default=None, repr=False)
    # Built programs by (source, options), held weakly: a program lives as long as an
    # executable uses it, so two live functions of one source share it, and the last one
    # to go releases it (clReleaseProgram) instead of the cache keeping it forever.
    _programs: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary,
                                                   repr=False)
    # Serializes everything that uses the queue and the buffers it runs on (calls, variable
    # reads and writes, allocation): the device's one in-order queue runs one call at a time
    # anyway, and calls of one function share their buffers. Reentrant: a debugging hook
    # may run other functions during a call.
    lock: Any = field(default_factory=threading.RLock, repr=False)

    backend = "opencl"      # a class attribute: runtime/vulkan_device.py's field says "vulkan"

    @property
    def is_discrete(self) -> bool:
        """True for a GPU with its own memory (not sharing host memory)."""
        return self.type == "gpu" and not self.unified_memory

    @property
    def kind(self) -> str:
        """'discrete gpu', 'integrated gpu', 'accelerator' or 'cpu'."""
        if self.type == "gpu":
            return "discrete gpu" if self.is_discrete else "integrated gpu"
        return self.type

    @property
    def implementation_version(self) -> tuple[int, ...]:
        """The driver's own version (e.g. PoCL 3.1 -> (3, 1)), parsed from the platform."""
        return parse_implementation_version(self.platform_version, self.driver_version)

    @property
    def context(self) -> Any:
        """The device's cl.Context, created on first use."""
        if self._context is None:
            with self.lock:                 # two threads must not make two contexts
                if self._context is None:
                    self._context = require_cl().Context([self.cl_device])
        return self._context

    @property
    def queue(self) -> Any:
        """The device's in-order cl.CommandQueue with profiling enabled, created on first use."""
        if self._queue is None:
            with self.lock:
                if self._queue is None:
                    ocl = require_cl()
                    props = ocl.command_queue_properties.PROFILING_ENABLE
                    self._queue = ocl.CommandQueue(self.context, self.cl_device,
                                                   properties=props)
        return self._queue

    def build(self, source: str, options: str = "") -> Any:
        """Build (or fetch from the memory or disk cache) a cl.Program for this device."""
        from .program_cache import build_program

        return build_program(self, source, options)

    def allocate(self, nbytes: int, name: str) -> Any:
        """Allocate a read-write cl.Buffer, checking the device's limit before OpenCL does."""
        ocl = require_cl()
        if nbytes > self.max_mem_alloc_size:
            raise DeviceError(too_large_text(self, name, nbytes))
        try:
            return ocl.Buffer(self.context, ocl.mem_flags.READ_WRITE, size=max(nbytes, 1))
        except (ocl.Error, MemoryError) as err:
            raise DeviceError(
                f"allocating buffer {name!r} of {nbytes} bytes ({format_bytes(nbytes)}) "
                f"failed on {self.describe()}: {err}") from err

    def describe(self) -> str:
        """One line naming the device: `#0 'name' (platform)`."""
        return f"#{self.index} {self.name!r} ({self.platform_name})"

    def __str__(self) -> str:
        return self.describe()


def devices() -> list[Device]:
    """Every OpenCL device of every platform, then every Vulkan physical device; [] without
    drivers (pyopencl, the `vulkan` package and their loaders are each optional)."""
    return list(_enumerate_devices()) + list(_enumerate_vulkan())


@functools.cache
def _enumerate_vulkan() -> tuple[Device, ...]:
    """The Vulkan devices, indexed after the OpenCL ones (enumerated once per process)."""
    from .vulkan_device import vulkan_devices

    return tuple(vulkan_devices(len(_enumerate_devices())))


# Enumerated once per process: a Device owns its context, and buffers (such as the variables
# that several compiled functions share) are only valid inside the context that made them.
@functools.cache
def _enumerate_devices() -> tuple[Device, ...]:
    """Query every platform once and wrap each of its devices."""
    found: list[Device] = []
    for platform in _platforms():
        for cl_device in _platform_devices(platform):
            found.append(make_device(len(found), cl_device, platform))
    return tuple(found)


def _platforms() -> list[Any]:
    """The installed OpenCL platforms, or [] when there is no ICD at all."""
    if cl is None:
        return []
    try:
        return list(cl.get_platforms())
    except (cl.Error, RuntimeError):  # PLATFORM_NOT_FOUND_KHR when no ICD is installed
        return []


def _platform_devices(platform: Any) -> list[Any]:
    """The devices of one platform, or [] when it has none (DEVICE_NOT_FOUND)."""
    try:
        found = list(platform.get_devices())
    except (cl.Error, RuntimeError):
        found = []
    if not found:
        _explain_missing_devices(platform)
    return found


def _explain_missing_devices(platform: Any) -> None:
    """PoCL offers no device at all when it cannot create its cache folder: say so."""
    from . import pocl

    if "portable computing" in str(_info(platform, "name", "")).lower():
        problem = pocl.unwritable_folder_problem()
        if problem:
            warnings.warn(f"the PoCL platform has no device: {problem}", stacklevel=4)


def _info(obj: Any, attr: str, default: Any) -> Any:
    """Read one info attribute, returning `default` where the driver does not answer."""
    try:
        return getattr(obj, attr)
    except Exception:  # drivers raise assorted cl errors for unsupported queries
        return default


def _device_type(cl_device: Any) -> str:
    """Map the OpenCL device-type bit field to 'gpu', 'accelerator' or 'cpu'."""
    bits = _info(cl_device, "type", 0)
    if bits & cl.device_type.GPU:
        return "gpu"
    if bits & (cl.device_type.ACCELERATOR | getattr(cl.device_type, "CUSTOM", 0)):
        return "accelerator"
    return "cpu"


def parse_opencl_c_version(text: str) -> tuple[int, int]:
    """Parse 'OpenCL C 1.2 pocl' -> (1, 2); (1, 0) when unparseable."""
    match = re.search(r"OpenCL C (\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else (1, 0)


def parse_implementation_version(platform_version: str, driver_version: str) -> tuple[int, ...]:
    """The first dotted version after the 'OpenCL x.y' prefix, else the driver version's."""
    rest = re.sub(r"^\s*OpenCL \d+\.\d+", "", platform_version or "")
    for text in (rest, driver_version or ""):
        match = re.search(r"\d+(?:\.\d+)+", text)
        if match:
            return tuple(int(part) for part in match.group(0).split("."))
    return ()


def make_device(index: int, cl_device: Any, platform: Any) -> Device:
    """Query a cl.Device's capabilities into a Device."""
    extensions = frozenset(str(_info(cl_device, "extensions", "")).split())
    double_config = _info(cl_device, "double_fp_config", 0) or 0
    return Device(
        index=index,
        name=str(_info(cl_device, "name", "unknown")).strip(),
        vendor=str(_info(cl_device, "vendor", "")).strip(),
        platform_name=str(_info(platform, "name", "unknown")).strip(),
        platform_version=str(_info(platform, "version", "")).strip(),
        type=_device_type(cl_device),
        unified_memory=bool(_info(cl_device, "host_unified_memory", False)),
        compute_units=int(_info(cl_device, "max_compute_units", 1)),
        global_mem_size=int(_info(cl_device, "global_mem_size", 0)),
        max_mem_alloc_size=int(_info(cl_device, "max_mem_alloc_size", 0)),
        local_mem_size=int(_info(cl_device, "local_mem_size", 0)),
        max_work_group_size=int(_info(cl_device, "max_work_group_size", 1)),
        max_work_item_sizes=tuple(int(s) for s in _info(cl_device, "max_work_item_sizes", [1])),
        preferred_float_vector_width=int(_info(cl_device, "preferred_vector_width_float", 1)),
        fp16="cl_khr_fp16" in extensions,
        fp64=double_config != 0 or "cl_khr_fp64" in extensions,
        opencl_c_version=parse_opencl_c_version(str(_info(cl_device, "opencl_c_version", ""))),
        driver_version=str(_info(cl_device, "driver_version", "")).strip(),
        extensions=extensions,
        cl_device=cl_device,
        cl_platform=platform,
    )


def _preference(device: Device) -> tuple:
    """Sort key, larger is better: device kind, then (CPUs) PoCL first, driver version, size.

    Among CPU devices PoCL wins over Mesa's llvmpipe (rusticl) and lavapipe (Vulkan), whose
    larger Mesa version number says nothing about speed: PoCL is the implementation built
    for CPUs (an MLP step: 13-15 ms on PoCL, 49-59 ms on lavapipe). Between backends of one
    kind, OpenCL wins: its GEMM and convolution templates are tuned, the Vulkan backend runs
    generic loop kernels for them (README, Devices).
    """
    is_cpu = device.type == "cpu"
    version = device.implementation_version if is_cpu else ()
    pocl = is_cpu and "portable computing" in device.platform_name.lower()
    simulator = is_simulator(device.platform_name)   # a checker, never the default
    return (not simulator, -_KIND_RANK.get(device.kind, 9), pocl, device.backend == "opencl",
            version, device.compute_units, device.global_mem_size, -device.index)


def is_simulator(platform_name: str) -> bool:
    """runtime/probe.py's rule. Imported here, not at the top: `python -m graphc.runtime.probe`
    (make venv) imports this package first, and runpy warns when the module it is about to
    run was imported already."""
    from .probe import is_simulator as rule
    return rule(platform_name)


def best_device(candidates: list[Device]) -> Device:
    """The preferred device: discrete GPU > integrated GPU > accelerator > CPU."""
    return max(candidates, key=_preference)


def select_device(spec: Device | int | str | None = None) -> Device:
    """Pick a device by Device, index or name substring; None: $GRAPHC_DEVICE, else the best."""
    if isinstance(spec, Device):
        return spec
    found = devices()
    if not found:
        raise DeviceError(f"no OpenCL platform/device (nor Vulkan device) was found; "
                          f"{INSTALL_HINT}")
    origin = "device"
    if spec is None:
        spec = os.environ.get(DEVICE_ENV, "").strip() or None
        origin = f"device from ${DEVICE_ENV}"
    if spec is None:
        return _default_device(found)
    return _match_spec(spec, found, origin)


def real_devices() -> list[Device]:
    """Every device that is not a simulator: the candidates for the default device."""
    return [d for d in devices() if not is_simulator(d.platform_name)]


def _default_device(found: list[Device]) -> Device:
    """The best device that is not a simulator; a simulator is only ever chosen by name."""
    real = [d for d in found if not is_simulator(d.platform_name)]
    if not real:
        names = ", ".join(f"{d.name} ({d.platform_name})" for d in found)
        raise DeviceError(f"only a simulator was found ({names}): it runs kernels hundreds of "
                          f"times slower than a device, so graphc never picks it by itself; "
                          f"select it by name (${DEVICE_ENV}=oclgrind) or {INSTALL_HINT}")
    return best_device(real)


def _match_spec(spec: int | str, found: list[Device], origin: str) -> Device:
    """Resolve an index or a case-insensitive name/platform substring among `found`."""
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise TypeError(f"device spec must be a Device, an int or a str, not {spec!r}")
    backend = _backend_spec(spec) if isinstance(spec, str) else None
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        if 0 <= index < len(found):
            return found[index]
    elif backend is not None:
        name, number = backend
        of_backend = [d for d in found if d.backend == name]
        if number is None and of_backend:
            return best_device(of_backend)
        if number is not None and 0 <= number < len(of_backend):
            return of_backend[number]
    else:
        needle = spec.strip().lower()
        matches = [d for d in found
                   if needle in d.name.lower() or needle in d.platform_name.lower()]
        if matches:
            return best_device(matches)
    listing = "\n".join(f"  {d.index}: {d.name} ({d.platform_name}, {d.backend})"
                        for d in found)
    raise DeviceError(f"{origin} {spec!r} not found; available devices:\n{listing}")


def _backend_spec(spec: str) -> tuple[str, int | None] | None:
    """("vulkan", None) for 'vulkan', ("vulkan", 1) for 'vulkan:1' (the second Vulkan
    device), likewise for 'opencl'; None for any other spec."""
    match = re.fullmatch(r"\s*(vulkan|opencl)\s*(?::\s*(\d+)\s*)?", spec.lower())
    if match is None:
        return None
    return match.group(1), None if match.group(2) is None else int(match.group(2))


_TABLE_HEADER = ("#", "backend", "platform", "name", "type", "CUs", "memory", "max alloc",
                 "fp16", "fp64", "version")


def _table_row(device: Device, default: Device) -> tuple[str, ...]:
    """The table cells of one device; '*' marks the default choice."""
    mark = "*" if device is default else ""
    version = "OpenCL C %d.%d" % device.opencl_c_version if device.backend == "opencl" else \
        "Vulkan %d.%d" % tuple(getattr(device, "api_version", (1, 0))[:2])
    return (f"{device.index}{mark}", device.backend, device.platform_name, device.name,
            device.kind, str(device.compute_units), format_bytes(device.global_mem_size),
            format_bytes(device.max_mem_alloc_size), "yes" if device.fp16 else "no",
            "yes" if device.fp64 else "no", version)


def _default_or_best(found: list[Device]) -> Device:
    """What select_device() picks, or the best device when $GRAPHC_DEVICE names none."""
    try:
        return select_device()
    except DeviceError:
        return best_device(found)


def format_device_table() -> str:
    """A text table of every device, OpenCL and Vulkan (what `graphc devices` prints)."""
    found = devices()
    if not found:
        return f"no OpenCL platform/device (nor Vulkan device) was found; {INSTALL_HINT}"
    default = _default_or_best(found)
    rows = [_TABLE_HEADER] + [_table_row(d, default) for d in found]
    widths = [max(len(row[col]) for row in rows) for col in range(len(_TABLE_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"* = default device (override with ${DEVICE_ENV}=<index, name, vulkan, "
                 f"vulkan:N, opencl or opencl:N>)")
    return "\n".join(lines)
