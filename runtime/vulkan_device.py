"""Vulkan devices: physical devices as graphc Devices, a logical device, buffers.

A VulkanDevice has the fields of an OpenCL Device (runtime/device.py) that code generation
and the checks read (kind, fp64, fp16, memory sizes, work-group limits), taken from the
physical device's properties, limits and features, plus the Vulkan limits the renderer
obeys (storage buffers per stage, bytes per binding, push constants, workgroups per
dimension). Its logical device, one compute queue and one command pool are made on first
use. Buffers live in host-visible, coherent memory, mapped once: on a unified-memory device
(lavapipe, integrated GPUs) that memory is the device's own, with no staging copy; a discrete
GPU reads it over the bus (slower, still correct: a staging path is not written yet).

Everything that records or submits work holds `lock`, as on OpenCL.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .device import Device
from .errors import DeviceError
from .limits import format_bytes, too_large_text
from .vulkan_api import physical_devices, require_vk

_TYPES = {1: "gpu", 2: "gpu", 3: "gpu", 4: "cpu"}   # integrated, discrete, virtual, CPU
_KINDS = {1: "integrated gpu", 2: "discrete gpu", 3: "integrated gpu", 4: "cpu"}


@dataclass(eq=False)
class VulkanDevice(Device):
    """One Vulkan physical device (see the module doc)."""

    backend: str = "vulkan"
    api_version: tuple[int, int, int] = (1, 0, 0)
    int64: bool = False
    storage8: bool = False
    storage16: bool = False
    max_storage_buffers: int = 4
    max_storage_buffer_range: int = 1 << 27
    max_push_constant_bytes: int = 128
    max_uniform_buffer_range: int = 16384
    max_group_count: tuple[int, int, int] = (65535, 65535, 65535)
    timestamp_period: float = 1.0
    timestamps: bool = False
    memory_type: int = 0
    physical: Any = field(default=None, repr=False)
    _logical: Any = field(default=None, repr=False)

    vk_type: int = 4            # VkPhysicalDeviceType

    @property
    def kind(self) -> str:
        """'discrete gpu', 'integrated gpu' (virtual GPUs too), 'cpu' or 'accelerator'."""
        return _KINDS.get(self.vk_type, "accelerator")

    @property
    def is_discrete(self) -> bool:
        return self.vk_type == 2

    @property
    def logical(self) -> "Logical":
        """The logical device, queue and command pool, made on first use."""
        if self._logical is None:
            with self.lock:
                if self._logical is None:
                    self._logical = Logical(self)
        return self._logical

    @property
    def context(self) -> Any:
        raise DeviceError(f"{self.describe()} is a Vulkan device: it has no OpenCL context")

    @property
    def queue(self) -> Any:
        raise DeviceError(f"{self.describe()} is a Vulkan device: it has no OpenCL queue")

    def build(self, source: str, options: str = "") -> Any:
        """The program of `source` (GLSL kernels): SPIR-V from the disk cache or glslang."""
        from .vulkan_program import build_program

        return build_program(self, source)

    def allocate(self, nbytes: int, name: str) -> "VulkanBuffer":
        """A storage buffer of `nbytes`, checked against the device's limits first."""
        if nbytes > self.max_mem_alloc_size:
            raise DeviceError(too_large_text(self, name, nbytes))
        return VulkanBuffer(self, max(int(nbytes), 4), name)

    def describe(self) -> str:
        return f"#{self.index} {self.name!r} ({self.platform_name})"


class Logical:
    """A VkDevice with the features graphc uses, its compute queue and command pool."""

    def __init__(self, device: VulkanDevice) -> None:
        v = require_vk()
        self.device = device
        family = _compute_family(device.physical)
        f11 = v.VkPhysicalDeviceVulkan11Features(storageBuffer16BitAccess=device.storage16)
        f12 = v.VkPhysicalDeviceVulkan12Features(pNext=f11, storageBuffer8BitAccess=device.storage8)
        base = v.VkPhysicalDeviceFeatures(shaderFloat64=device.fp64, shaderInt64=device.int64)
        queue_info = v.VkDeviceQueueCreateInfo(queueFamilyIndex=family, queueCount=1,
                                               pQueuePriorities=[1.0])
        info = v.VkDeviceCreateInfo(pNext=f12, queueCreateInfoCount=1,
                                    pQueueCreateInfos=[queue_info], pEnabledFeatures=base)
        try:
            self.handle = v.vkCreateDevice(device.physical, info, None)
        except v.VkError as err:
            raise DeviceError(f"vkCreateDevice failed on {device.describe()}: "
                              f"{type(err).__name__}") from err
        self.queue = v.vkGetDeviceQueue(self.handle, family, 0)
        self.pool = v.vkCreateCommandPool(self.handle, v.VkCommandPoolCreateInfo(
            flags=v.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
            queueFamilyIndex=family), None)
        self.fence = v.vkCreateFence(self.handle, v.VkFenceCreateInfo(), None)

    def submit_and_wait(self, command_buffer: Any) -> None:
        """Run one command buffer and wait for its fence (callers hold the device lock)."""
        v = vk_module()
        v.vkQueueSubmit(self.queue, 1, [v.VkSubmitInfo(commandBufferCount=1,
                                                       pCommandBuffers=[command_buffer])],
                        self.fence)
        try:
            v.vkWaitForFences(self.handle, 1, [self.fence], v.VK_TRUE, 600 * 10 ** 9)
        finally:
            v.vkResetFences(self.handle, 1, [self.fence])


def vk_module() -> Any:
    return require_vk()


class VulkanBuffer:
    """A storage buffer in host-visible coherent memory, mapped once (`array`: its bytes)."""

    def __init__(self, device: VulkanDevice, nbytes: int, name: str) -> None:
        v = require_vk()
        logical = device.logical
        self.device, self.nbytes, self.name = device, nbytes, name
        usage = v.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | v.VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT
        try:
            self.handle = v.vkCreateBuffer(logical.handle, v.VkBufferCreateInfo(
                size=nbytes, usage=usage, sharingMode=v.VK_SHARING_MODE_EXCLUSIVE), None)
            needs = v.vkGetBufferMemoryRequirements(logical.handle, self.handle)
            self.memory = v.vkAllocateMemory(logical.handle, v.VkMemoryAllocateInfo(
                allocationSize=needs.size, memoryTypeIndex=device.memory_type), None)
        except (v.VkError, MemoryError) as err:
            raise DeviceError(f"allocating buffer {name!r} of {nbytes} bytes "
                              f"({format_bytes(nbytes)}) failed on {device.describe()}: "
                              f"{type(err).__name__}") from err
        v.vkBindBufferMemory(logical.handle, self.handle, self.memory, 0)
        mapped = v.vkMapMemory(logical.handle, self.memory, 0, nbytes, 0)
        self.array = np.frombuffer(mapped, dtype=np.uint8, count=nbytes)
        self._logical = logical.handle

    @property
    def root(self) -> int:
        """What barriers track (a view's root is its parent buffer)."""
        return id(self)

    def write(self, host: np.ndarray, offset: int = 0) -> None:
        """Copy `host`'s bytes in at byte `offset`."""
        data = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
        self.array[offset:offset + data.size] = data

    def read(self, host: np.ndarray, offset: int = 0) -> None:
        """Copy bytes from `offset` on into the C-contiguous array `host`."""
        flat = host.reshape(-1).view(np.uint8)
        flat[...] = self.array[offset:offset + flat.size]

    def __del__(self) -> None:
        v = vk_module_or_none()
        if v is None or getattr(self, "memory", None) is None:
            return
        try:
            self.array = None
            v.vkDestroyBuffer(self._logical, self.handle, None)
            v.vkFreeMemory(self._logical, self.memory, None)
        except Exception:       # interpreter shutdown
            pass


def vk_module_or_none():
    try:
        from .vulkan_api import vk
    except ImportError:     # interpreter shutdown: nothing to release any more
        return None
    return vk


def _compute_family(physical: Any) -> int:
    v = require_vk()
    for index, family in enumerate(v.vkGetPhysicalDeviceQueueFamilyProperties(physical)):
        if family.queueFlags & v.VK_QUEUE_COMPUTE_BIT:
            return index
    raise DeviceError("the Vulkan device has no compute queue")


def vulkan_devices(first_index: int) -> list[VulkanDevice]:
    """Every Vulkan physical device with a compute queue, indexed from `first_index`."""
    found = []
    for physical in physical_devices():
        try:
            found.append(_make_device(first_index + len(found), physical))
        except DeviceError:
            continue
    return found


def _make_device(index: int, physical: Any) -> VulkanDevice:
    v = require_vk()
    props = v.vkGetPhysicalDeviceProperties(physical)
    limits = props.limits
    f11 = v.VkPhysicalDeviceVulkan11Features()
    f12 = v.VkPhysicalDeviceVulkan12Features(pNext=f11)
    features = v.VkPhysicalDeviceFeatures2(pNext=f12)
    v.vkGetPhysicalDeviceFeatures2(physical, features)
    memory = v.vkGetPhysicalDeviceMemoryProperties(physical)
    memory_type, heap_size, unified = _host_memory(v, memory)
    families = v.vkGetPhysicalDeviceQueueFamilyProperties(physical)
    family = _compute_family(physical)
    api = props.apiVersion
    version = (api >> 22, (api >> 12) & 0x3FF, api & 0xFFF)
    name = str(props.deviceName)
    binding = int(limits.maxStorageBufferRange)
    return VulkanDevice(
        index=index, name=name, vendor=f"0x{props.vendorID:04x}",
        platform_name=f"Vulkan {version[0]}.{version[1]}", platform_version=
        f"Vulkan {version[0]}.{version[1]}.{version[2]}",
        type=_TYPES.get(props.deviceType, "accelerator"), unified_memory=unified,
        compute_units=1, global_mem_size=heap_size, max_mem_alloc_size=min(binding, heap_size),
        local_mem_size=int(limits.maxComputeSharedMemorySize),
        max_work_group_size=int(limits.maxComputeWorkGroupInvocations),
        max_work_item_sizes=tuple(int(s) for s in limits.maxComputeWorkGroupSize),
        preferred_float_vector_width=1, fp16=bool(f11.storageBuffer16BitAccess),
        fp64=bool(features.features.shaderFloat64), opencl_c_version=(0, 0),
        driver_version=str(props.driverVersion), extensions=frozenset(), cl_device=None,
        cl_platform=None, api_version=version, int64=bool(features.features.shaderInt64),
        storage8=bool(f12.storageBuffer8BitAccess),
        storage16=bool(f11.storageBuffer16BitAccess),
        max_storage_buffers=int(limits.maxPerStageDescriptorStorageBuffers),
        max_storage_buffer_range=binding,
        max_push_constant_bytes=int(limits.maxPushConstantsSize),
        max_uniform_buffer_range=int(limits.maxUniformBufferRange),
        max_group_count=tuple(int(c) for c in limits.maxComputeWorkGroupCount),
        timestamp_period=float(limits.timestampPeriod),
        timestamps=bool(families[family].timestampValidBits) and
        bool(limits.timestampComputeAndGraphics),
        memory_type=memory_type, physical=physical, vk_type=int(props.deviceType),
        lock=threading.RLock())


def _host_memory(v: Any, memory: Any) -> tuple[int, int, bool]:
    """(memory type index, its heap's size, unified): host-visible and coherent memory,
    device-local too where there is such (unified memory)."""
    visible = v.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | v.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
    local = v.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
    candidates = [(i, memory.memoryTypes[i]) for i in range(memory.memoryTypeCount)
                  if memory.memoryTypes[i].propertyFlags & visible == visible]
    if not candidates:
        raise DeviceError("the Vulkan device has no host-visible coherent memory")
    unified = [c for c in candidates if c[1].propertyFlags & local]
    index, kind = (unified or candidates)[0]
    return index, int(memory.memoryHeaps[kind.heapIndex].size), bool(unified)
