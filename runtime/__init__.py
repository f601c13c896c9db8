"""graphc.runtime: runs compiled plans on OpenCL devices; never imports the compiler."""
from .device import Device, devices, format_device_table, select_device
from .errors import CompileError, DeviceError, ExportError, FeedError, GraphcError, LaunchError
from .executable import Executable, StepTiming
from .export_format import TensorSpec
from .host import register_host_function
from .host_io import aligned_empty
from .launch import BufferArg, BufferSpec, HostCall, IOBinding, KernelLaunch, Plan, ScalarArg
from .loaded import LoadedFunction, load
from .profiling import KernelTiming, format_profile, kernel_timings
from .program_cache import BuildRecord, CacheWarning, cache_dir
from .resident import ResidentArray

__all__ = [
    "BufferArg", "BufferSpec", "BuildRecord", "CacheWarning", "CompileError", "Device",
    "DeviceError", "Executable", "ExportError", "FeedError", "GraphcError", "HostCall",
    "IOBinding", "KernelLaunch", "KernelTiming", "LaunchError", "LoadedFunction", "Plan",
    "ResidentArray", "ScalarArg", "StepTiming", "TensorSpec", "aligned_empty", "cache_dir",
    "devices", "format_device_table", "format_profile", "kernel_timings", "load",
    "register_host_function", "select_device",
]
