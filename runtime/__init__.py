"""graphc.runtime: runs compiled plans on OpenCL devices; never imports the compiler."""
from .device import Device, devices, format_device_table, select_device
from .errors import CompileError, DeviceError, GraphcError, LaunchError
from .executable import Executable
from .host import register_host_function
from .launch import BufferArg, BufferSpec, HostCall, IOBinding, KernelLaunch, Plan, ScalarArg
from .profiling import KernelTiming, format_profile, kernel_timings
from .program_cache import BuildRecord, CacheWarning, cache_dir
from .resident import ResidentArray

__all__ = [
    "BufferArg", "BufferSpec", "BuildRecord", "CacheWarning", "CompileError", "Device",
    "DeviceError", "Executable", "GraphcError", "HostCall", "IOBinding", "KernelLaunch",
    "KernelTiming", "LaunchError", "Plan", "ResidentArray", "ScalarArg", "cache_dir",
    "devices", "format_device_table", "format_profile", "kernel_timings",
    "register_host_function", "select_device",
]
