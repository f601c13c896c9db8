"""ResidentArray: a host numpy array mirrored in a device buffer, synced lazily both ways."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._opencl import require_cl

if TYPE_CHECKING:
    from .device import Device

# Which copy holds the current value.
_BOTH, _HOST_NEWER, _DEVICE_NEWER = "both", "host", "device"


class ResidentArray:
    """A value (e.g. a variable shared by compiled functions) living on one device."""

    def __init__(self, device: Device, array: np.ndarray, name: str) -> None:
        self.device = device
        self.name = name
        self._host = np.array(array, order="C", copy=True)
        self._buffer: Any = None
        self._state = _HOST_NEWER
        # pyopencl's transfer event keeps the host array alive until the copy is done, and
        # waits for it when collected; holding it lets the upload overlap later work.
        self._upload_event: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape (fixed for the array's lifetime)."""
        return self._host.shape

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype (fixed for the array's lifetime)."""
        return self._host.dtype

    @property
    def nbytes(self) -> int:
        """Size of the value in bytes."""
        return self._host.nbytes

    @property
    def buffer(self) -> Any:
        """The cl.Buffer holding the value, allocated once and uploaded if the host is newer."""
        if self._buffer is None:
            self._buffer = self.device.allocate(self.nbytes, self.name)
        if self._state == _HOST_NEWER:
            self._upload()
        return self._buffer

    def read(self) -> np.ndarray:
        """A copy of the current value, read back from the device if the device copy is newer."""
        with self.device.lock:      # not halfway through a call that writes it
            if self._state == _DEVICE_NEWER:
                if self.nbytes and _is_vulkan(self.device):
                    self._buffer.read(self._host)       # mapped memory, the device idle
                elif self.nbytes:
                    cl = require_cl()
                    cl.enqueue_copy(self.device.queue, self._host, self._buffer,
                                    is_blocking=True)
                self._state = _BOTH
            return self._host.copy()

    def write(self, array: np.ndarray) -> None:
        """Replace the value; shape and dtype must match. Uploaded before the next use."""
        array = np.asarray(array)
        if array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(
                f"{self.name!r}: cannot write an array of shape {array.shape} and dtype "
                f"{array.dtype} into one of shape {self.shape} and dtype {self.dtype}")
        # A fresh host array: an upload still in flight keeps the old one alive and intact.
        fresh = np.array(array, order="C", copy=True)
        with self.device.lock:
            self._host = fresh
            self._state = _HOST_NEWER

    def mark_device_dirty(self) -> None:
        """Record that a kernel wrote the device buffer, so read() must fetch it."""
        if self._buffer is None:
            raise RuntimeError(f"{self.name!r} has no device buffer to be dirty")
        self._state = _DEVICE_NEWER

    def _upload(self) -> None:
        """Queue a copy of the host value into the buffer (ordered by the in-order queue)."""
        if self.nbytes and _is_vulkan(self.device):
            self._buffer.write(self._host)      # mapped memory: a plain copy, no queue
        elif self.nbytes:
            cl = require_cl()
            self._upload_event = cl.enqueue_copy(self.device.queue, self._buffer, self._host,
                                                 is_blocking=False)
        self._state = _BOTH

    def __repr__(self) -> str:
        return (f"ResidentArray({self.name!r}, shape={self.shape}, dtype={self.dtype}, "
                f"fresh={self._state}, device={self.device.describe()})")


def _is_vulkan(device: Device) -> bool:
    return getattr(device, "backend", "opencl") == "vulkan"
