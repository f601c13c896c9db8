"""Executable: a Plan built, allocated and bound once, then run as a plain enqueue sequence."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._opencl import require_cl
from .device import Device
from .errors import DeviceError, launch_error
from .launch import BufferArg, IOBinding, KernelLaunch, Plan, plan_problems
from .limits import check_plan_fits
from .resident import ResidentArray


class Executable:
    """Runs one Plan on one device: feeds in, kernels in order, outputs out. On a Vulkan
    device, Executable(...) makes a VulkanExecutable (runtime/vulkan_executable.py)."""

    def __new__(cls, device: Device, *args: Any, **kwargs: Any) -> "Executable":
        if cls is Executable and getattr(device, "backend", "opencl") == "vulkan":
            from .vulkan_executable import VulkanExecutable
            return super().__new__(VulkanExecutable)
        return super().__new__(cls)

    def __init__(self, device: Device, plan: Plan,
                 variables: Mapping[str, ResidentArray] | None = None) -> None:
        problems = plan_problems(plan)
        if problems:
            raise ValueError("invalid plan:\n  " + "\n  ".join(problems))
        self.device = device
        self.plan = plan
        self.variables = _check_variables(device, plan, variables or {})
        check_plan_fits(device, plan)       # before building: nothing is built in vain
        # nothing to build for a plan without kernels (rusticl aborts on an empty program)
        self.program = device.build(plan.source, plan.build_options) if plan.launches else None
        with device.lock:       # uploads of shared variables are ordered with running calls
            self.buffers = self._allocate_buffers()
            self._kernels = [self._bind_kernel(launch) for launch in plan.launches]
        self.last_profile: list[tuple[str, float]] = []

    @property
    def buffer_bytes(self) -> int:
        """Device bytes this executable allocated itself (variables not included)."""
        return sum(spec.nbytes for spec in self.plan.buffers
                   if spec.role != "variable" and not spec.parent)

    def __call__(self, *feeds: np.ndarray) -> list[np.ndarray]:
        """Same as run(list(feeds))."""
        return self.run(list(feeds))

    def run(self, feeds: Sequence[np.ndarray], profile: bool = False,
            after_launch: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Copy feeds in, enqueue every launch in order, and return the outputs as numpy.

        With `after_launch`, each launch is finished before `after_launch(index)` is called
        (a debugging mode: the callback may read the buffers the launch wrote).

        Runs hold the device's lock: the executable's buffers serve one run at a time, and
        the variables it shares with other executables are read and written in turn."""
        if len(feeds) != len(self.plan.inputs):
            raise ValueError(f"expected {len(self.plan.inputs)} feeds "
                             f"({[b.name for b in self.plan.inputs]}), got {len(feeds)}")
        with self.device.lock:
            return self._run(feeds, profile, after_launch)

    def _run(self, feeds: Sequence[np.ndarray], profile: bool,
             after_launch: Callable[[int], None] | None) -> list[np.ndarray]:
        # Holding the transfer events stops pyopencl from waiting on each copy as it is made.
        transfers = [self._write_input(b, f) for b, f in zip(self.plan.inputs, feeds)]
        for resident in self.variables.values():
            resident.buffer  # uploads a value written on the host since the last run
        events = [self._enqueue_then(i, after_launch) for i in range(len(self._kernels))]
        outputs, reads = self._read_outputs()
        self._wait(reads)
        for resident in self.variables.values():
            resident.mark_device_dirty()
        if profile:
            self.last_profile = _event_times(self.plan.launches, events)
        transfers.clear()  # finished before the reads did (in-order queue)
        return outputs

    def _allocate_buffers(self) -> dict[str, Any]:
        """One cl.Buffer per plan buffer; variable buffers come from their ResidentArray."""
        by_buffer = {b.buffer: self.variables[b.name] for b in self.plan.variables}
        buffers = {}
        for spec in self.plan.buffers:
            if spec.role == "variable":
                if spec.name not in by_buffer:
                    raise ValueError(f"variable buffer {spec.name!r} has no variable binding")
                buffers[spec.name] = by_buffer[spec.name].buffer
            elif not spec.parent:
                buffers[spec.name] = self.device.allocate(spec.nbytes, spec.name)
        for spec in self.plan.buffers:
            if spec.parent:
                buffers[spec.name] = buffers[spec.parent].get_sub_region(spec.offset,
                                                                         max(spec.nbytes, 1))
        return buffers

    def _bind_kernel(self, launch: KernelLaunch) -> Any:
        """Create the launch's cl.Kernel and set its arguments once."""
        cl = require_cl()
        try:
            kernel = cl.Kernel(self.program, launch.name)
            if kernel.num_args != len(launch.args):
                raise _launch_failure(launch, f"the kernel takes {kernel.num_args} arguments")
            for index, arg in enumerate(launch.args):
                kernel.set_arg(index, self._arg_value(arg))
        except cl.Error as err:
            raise _launch_failure(launch, f"binding failed: {err}") from err
        return kernel

    def _arg_value(self, arg: Any) -> Any:
        """The value set for one kernel argument: a cl.Buffer or a typed numpy scalar."""
        if isinstance(arg, BufferArg):
            return self.buffers[arg.buffer]
        return np.dtype(arg.dtype).type(arg.value)

    def _write_input(self, binding: IOBinding, feed: np.ndarray) -> Any:
        """Queue a non-blocking copy of one feed into its buffer; returns the transfer event."""
        array = np.asarray(feed, dtype=binding.dtype)
        if array.shape != tuple(binding.shape):
            raise ValueError(f"input {binding.name!r} expects shape {tuple(binding.shape)}, "
                             f"got {array.shape}")
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        if array.nbytes == 0:
            return None
        buffer = self.buffers[binding.buffer]
        return require_cl().enqueue_copy(self.device.queue, buffer, array, is_blocking=False)

    def _enqueue_then(self, index: int, after_launch: Callable[[int], None] | None) -> Any:
        """Enqueue launch `index`; with a callback, wait for it and call the callback."""
        event = self._enqueue(index)
        if after_launch is not None:
            self.device.queue.finish()
            after_launch(index)
        return event

    def _enqueue(self, index: int) -> Any:
        """Enqueue launch `index`; None for a launch with no work items."""
        launch = self.plan.launches[index]
        if 0 in launch.global_size:
            return None
        cl = require_cl()
        try:
            return cl.enqueue_nd_range_kernel(self.device.queue, self._kernels[index],
                                              launch.global_size, launch.local_size)
        except cl.Error as err:
            raise _launch_failure(launch, f"enqueue failed: {err}") from err

    def _read_outputs(self) -> tuple[list[np.ndarray], list[Any]]:
        """Queue one non-blocking read per output; returns the arrays and the read events."""
        cl = require_cl()
        outputs, reads = [], []
        for binding in self.plan.outputs:
            array = np.empty(binding.shape, dtype=binding.dtype)
            if array.nbytes:
                reads.append(cl.enqueue_copy(self.device.queue, array,
                                             self.buffers[binding.buffer], is_blocking=False))
            outputs.append(array)
        return outputs, reads

    def _wait(self, reads: list[Any]) -> None:
        """Block until the reads (and so, in order, everything before them) have finished."""
        if reads:
            require_cl().wait_for_events(reads)
        else:
            self.device.queue.finish()


def _check_variables(device: Device, plan: Plan,
                     variables: Mapping[str, ResidentArray]) -> dict[str, ResidentArray]:
    """The ResidentArray of every variable binding, checked against device, shape and dtype."""
    checked = {}
    for binding in plan.variables:
        resident = variables.get(binding.name)
        if resident is None:
            raise ValueError(f"plan variable {binding.name!r} was not given a ResidentArray")
        if resident.device is not device:
            raise DeviceError(f"variable {binding.name!r} lives on {resident.device}, "
                              f"not on {device}")
        if resident.shape != tuple(binding.shape) or resident.dtype != np.dtype(binding.dtype):
            raise ValueError(f"variable {binding.name!r} is {resident.dtype}{resident.shape}, "
                             f"the plan expects {binding.dtype}{tuple(binding.shape)}")
        checked[binding.name] = resident
    return checked


def _launch_failure(launch: KernelLaunch, reason: str) -> Exception:
    """A LaunchError describing `launch`."""
    return launch_error(launch.name, launch.global_size, launch.local_size, launch.args, reason)


def _event_times(launches: Sequence[KernelLaunch],
                 events: Sequence[Any]) -> list[tuple[str, float]]:
    """(kernel name, seconds) per launch from profiling events; 0.0 for skipped launches."""
    times = []
    for launch, event in zip(launches, events):
        seconds = 0.0 if event is None else (event.profile.end - event.profile.start) * 1e-9
        times.append((launch.name, seconds))
    return times


check_variables = _check_variables      # the Vulkan executable checks its variables alike
