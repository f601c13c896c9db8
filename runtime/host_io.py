"""Feeds into a plan's input buffers: zero-copy where the device shares the host's memory.

On a unified-memory device (every CPU device, integrated GPUs) a feed that starts at an
address aligned to the device's base address alignment (CL_DEVICE_MEM_BASE_ADDR_ALIGN:
128 bytes on PoCL) is wrapped for the call as a CL_MEM_USE_HOST_PTR buffer: the kernels
read the caller's array where it lies, with no copy. Any other feed (unaligned, read-only,
of a discrete GPU, or an input that a view of the plan carves up) is copied into the
input's own buffer, as before. `aligned_empty` makes arrays that take the zero-copy path.

This relies on the contract of the "input" role (runtime/launch.py): kernels only read
input buffers, so the caller's array is never written. A wrapper is made afresh for every
call (a driver may copy the host memory when the buffer is made, so a wrapper kept from an
earlier call could hold stale data) and is kept until the next call sets the kernels'
arguments again, so no kernel argument ever names a released buffer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._opencl import require_cl
from .launch import BufferArg, IOBinding, Plan

if TYPE_CHECKING:
    from .device import Device

DEFAULT_ALIGNMENT = 128     # bytes; PoCL's and most GPUs' base address alignment


def address_alignment(device: Device) -> int:
    """Bytes a USE_HOST_PTR array must be aligned to for the device to use it in place."""
    bits = getattr(device.cl_device, "mem_base_addr_align", 0) if device.cl_device else 0
    try:
        return max(int(bits) // 8, 1) if bits else DEFAULT_ALIGNMENT
    except (TypeError, ValueError):
        return DEFAULT_ALIGNMENT


def aligned_empty(shape, dtype, alignment: int = 4096) -> np.ndarray:
    """An uninitialized C-ordered array whose data starts at a multiple of `alignment`
    bytes (a page by default, which satisfies every device's base address alignment)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + alignment, np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray, alignment: int) -> bool:
    """True when `array`'s data starts at a multiple of `alignment` bytes."""
    return array.ctypes.data % alignment == 0


class InputSlot:
    """One input binding: its own buffer, the kernel arguments that read it, and how the
    current call's feed reaches them."""

    def __init__(self, device: Device, binding: IOBinding, buffer: Any,
                 sites: list[tuple[Any, int]], zero_copy: bool) -> None:
        self.device = device
        self.binding = binding
        self.buffer = buffer
        self.sites = sites
        self.zero_copy = zero_copy
        self.alignment = address_alignment(device) if zero_copy else 0
        self.bound: Any = buffer            # what the kernel arguments name now
        self.in_place_calls = 0             # calls whose feed was read where it lay

    def feed(self, array: np.ndarray, in_place: bool = True) -> Any:
        """Make `array` (checked: shape, dtype, C order) the input of this call. Returns
        what must live until the call ends: a transfer event, a wrapper, or None."""
        if array.nbytes == 0:
            return None
        if in_place and self.zero_copy and is_aligned(array, self.alignment):
            wrapper = self._wrap(array)
            if wrapper is not None:
                self._bind(wrapper)
                self.in_place_calls += 1
                return wrapper
        self._bind(self.buffer)
        return require_cl().enqueue_copy(self.device.queue, self.buffer, array,
                                         is_blocking=False)

    def _wrap(self, array: np.ndarray) -> Any:
        """A read-only USE_HOST_PTR buffer over `array`, or None where the driver or the
        array refuses (a read-only array, say): the feed is then copied."""
        cl = require_cl()
        flags = cl.mem_flags.READ_ONLY | cl.mem_flags.USE_HOST_PTR
        try:
            return cl.Buffer(self.device.context, flags, hostbuf=array)
        except (cl.Error, TypeError, ValueError, BufferError):
            return None

    def _bind(self, buffer: Any) -> None:
        """Point every kernel argument of this input at `buffer` (when it changes)."""
        if buffer is self.bound:
            return
        for kernel, index in self.sites:
            kernel.set_arg(index, buffer)
        self.bound = buffer


def input_slots(device: Device, plan: Plan, buffers: dict[str, Any],
                kernels: list[Any]) -> list[InputSlot]:
    """One InputSlot per input binding of `plan`, in order. Zero-copy is offered for inputs
    of a unified-memory device whose buffer no view of the plan carves up and no other
    binding (an output, a host call's argument) names."""
    parents = {spec.parent for spec in plan.buffers if spec.parent}
    named = [b.buffer for b in plan.inputs + plan.outputs + plan.variables]
    named += [b.buffer for call in plan.host_calls for b in call.inputs + call.outputs]
    slots = []
    for binding in plan.inputs:
        sites = [(kernel, index) for kernel, launch in zip(kernels, plan.launches)
                 for index, arg in enumerate(launch.args)
                 if isinstance(arg, BufferArg) and arg.buffer == binding.buffer]
        zero_copy = (device.unified_memory and binding.buffer not in parents
                     and named.count(binding.buffer) == 1)
        slots.append(InputSlot(device, binding, buffers[binding.buffer], sites, zero_copy))
    return slots
