"""Executable: a Plan built, allocated and bound once, then run as a plain enqueue sequence."""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._opencl import require_cl
from .device import Device
from .errors import DeviceError, launch_error
from .host import HostSteps, host_function
from .host_io import input_slots
from . import prewarm
from .launch import BufferArg, IOBinding, KernelLaunch, Plan, plan_problems
from .limits import check_plan_fits
from .resident import ResidentArray


@dataclass(frozen=True)
class StepTiming:
    """One profiled call: perf_counter() when it started and when its last read was done,
    and the seconds the device spent on its commands (transfers and kernels). The rest of
    the wall time is host overhead: Python, the driver's enqueues, waking up to wait."""

    started: float
    finished: float
    device_seconds: float

    @property
    def wall_seconds(self) -> float:
        """From the start of the call to the end of its last read."""
        return self.finished - self.started

    @property
    def host_seconds(self) -> float:
        """Wall time the device was not busy with this call's commands."""
        return max(self.wall_seconds - self.device_seconds, 0.0)


class PendingRun:
    """A run enqueued by Executable.run_async: `result()` waits and gives its outputs."""

    def __init__(self, executable: Executable, outputs: list[np.ndarray], reads: list[Any],
                 kept: list[Any]) -> None:
        self._executable = executable
        self._outputs = outputs
        self._reads = reads
        self._kept = kept       # transfer events and wrappers: alive until the run is done

    @property
    def done(self) -> bool:
        """True once the outputs have been read back (result() then returns at once)."""
        return self._kept is None

    def result(self) -> list[np.ndarray]:
        """The run's outputs, waiting for them the first time."""
        if self._kept is not None:
            self._executable._wait(self._reads)
            self._executable._stop_prewarm()
            self._kept = None
            self._reads = []
        return self._outputs


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
        for call in plan.host_calls:
            host_function(call.function)        # registered? (KeyError naming it)
        if problems:
            raise ValueError("invalid plan:\n  " + "\n  ".join(problems))
        self.device = device
        self.plan = plan
        self.variables = _check_variables(device, plan, variables or {})
        check_plan_fits(device, plan)       # before building: nothing is built in vain
        # nothing to build for a plan without kernels (rusticl aborts on an empty program)
        built = time.perf_counter()
        self.program = device.build(plan.source, plan.build_options) if plan.launches else None
        built = time.perf_counter() - built
        with device.lock:       # uploads of shared variables are ordered with running calls
            self.buffers = self._allocate_buffers()
            self._kernels = [self._bind_kernel(launch) for launch in plan.launches]
        self._slots = input_slots(device, plan, self.buffers, self._kernels)
        self._residents = list(self.variables.values())
        # what a plain call enqueues: no per-launch work in Python beyond the enqueue itself
        self._ready = [(kernel, launch.global_size, launch.local_size, launch)
                       for kernel, launch in zip(self._kernels, plan.launches)
                       if 0 not in launch.global_size]
        self.last_profile: list[tuple[str, float]] = []
        self.last_timing: StepTiming | None = None
        self.last_host_seconds = 0.0    # time the last run spent in host functions
        self._prewarm = self._start_prewarm(built)

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
        self._check_count(feeds)
        with self.device.lock:
            return self._run(feeds, profile, after_launch)

    def run_async(self, feeds: Sequence[np.ndarray]) -> PendingRun:
        """Enqueue a run and return at once; `.result()` waits for its outputs. Runs on the
        device's one in-order queue, so a later run or variable read sees this one's
        writes. The fed arrays must stay unchanged until `result()` returns (the device
        reads them in place, or copies them, when it gets to them)."""
        self._check_count(feeds)
        with self.device.lock:
            if self.plan.host_calls:        # the host takes part in the run: done at once
                return PendingRun(self, self._run(feeds, False, None), [], None)
            kept = self._feed(feeds, in_place=True)
            self._enqueue_ready()
            outputs, reads = self._read_outputs()
            for resident in self._residents:
                resident.mark_device_dirty()
            done = reads or [require_cl().enqueue_marker(self.device.queue)]
            return PendingRun(self, outputs, done, kept)

    def _check_count(self, feeds: Sequence[np.ndarray]) -> None:
        if len(feeds) != len(self.plan.inputs):
            raise ValueError(f"expected {len(self.plan.inputs)} feeds "
                             f"({[b.name for b in self.plan.inputs]}), got {len(feeds)}")

    def _feed(self, feeds: Sequence[np.ndarray], in_place: bool) -> list[Any]:
        """Every feed to its input, and shared variables written on the host uploaded;
        what must live until the run is done (transfer events, zero-copy wrappers)."""
        kept = [slot.feed(self._prepared(slot.binding, feed), in_place)
                for slot, feed in zip(self._slots, feeds)]
        for resident in self._residents:
            resident.buffer  # uploads a value written on the host since the last run
        return kept

    def _run(self, feeds: Sequence[np.ndarray], profile: bool,
             after_launch: Callable[[int], None] | None) -> list[np.ndarray]:
        started = time.perf_counter()
        # A debugging callback reads the input buffers themselves: no zero-copy feeds then.
        kept = self._feed(feeds, in_place=after_launch is None)
        if self.plan.host_calls:
            events = self._enqueue_with_host_calls(after_launch, kept)
        elif profile or after_launch is not None:
            events = [self._enqueue_then(i, after_launch) for i in range(len(self._kernels))]
        else:
            events = None
            self._enqueue_ready()
        outputs, reads = self._read_outputs()
        self._wait(reads)
        finished = time.perf_counter()
        self._stop_prewarm()
        for resident in self._residents:
            resident.mark_device_dirty()
        if events is not None:
            self.last_profile = _event_times(self.plan.launches, events)
            commands = [e for e in kept + events + reads if _is_event(e)]
            self.last_timing = StepTiming(started, finished, _busy_seconds(commands))
        kept.clear()  # finished before the reads did (in-order queue)
        return outputs

    def _start_prewarm(self, build_seconds: float) -> Any:
        """After a cold build on PoCL: a helper process that compiles kernels from the last
        launch back while the first call compiles them from the first on (runtime/prewarm.py)."""
        if not (self.plan.launches and prewarm.wanted(self.device, self.plan, build_seconds)):
            return None
        helper = prewarm.start(self.device, self.plan)
        if helper is not None:
            weakref.finalize(self, helper.stop)
        return helper

    def _stop_prewarm(self) -> None:
        """The first call is done: every kernel is compiled, the helper is not needed."""
        if self._prewarm is not None:
            self._prewarm.stop()
            self._prewarm = None

    def _enqueue_ready(self) -> None:
        """Enqueue every launch that has work items, in order."""
        cl = require_cl()
        enqueue, queue = cl.enqueue_nd_range_kernel, self.device.queue
        launch = None
        try:
            for kernel, global_size, local_size, launch in self._ready:
                enqueue(queue, kernel, global_size, local_size)
        except cl.Error as err:
            raise _launch_failure(launch, f"enqueue failed: {err}") from err

    @property
    def in_place_feeds(self) -> dict[str, int]:
        """Per input: how many calls read the caller's array in place (zero-copy)."""
        return {slot.binding.name: slot.in_place_calls for slot in self._slots}

    def _enqueue_with_host_calls(self, after_launch: Callable[[int], None] | None,
                                 transfers: list) -> list:
        """Every launch, with the plan's host calls between them (runtime/host.py); the
        copies of their results to the device join `transfers`."""
        host = HostSteps(self.plan, self.device, self.buffers, after_launch is not None)
        events = []
        try:
            for index in range(len(self._kernels)):
                host.before(index)
                events.append(self._enqueue_then(index, after_launch))
            host.before(len(self._kernels))
        except BaseException:
            host.drain()
            raise
        self.last_host_seconds = host.seconds
        transfers.extend(host.keep)
        return events

    def _allocate_buffers(self) -> dict[str, Any]:
        """One cl.Buffer per plan buffer; a view is a sub-buffer of its parent."""
        return plan_buffers(self.plan, self.variables, self.device.allocate,
                            lambda parent, offset, nbytes:
                                parent.get_sub_region(offset, max(nbytes, 1)))

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

    @staticmethod
    def _prepared(binding: IOBinding, feed: np.ndarray) -> np.ndarray:
        """One feed as a C-ordered array of the binding's dtype and shape."""
        array = np.asarray(feed, dtype=binding.dtype)
        if array.shape != tuple(binding.shape):
            raise ValueError(f"input {binding.name!r} expects shape {tuple(binding.shape)}, "
                             f"got {array.shape}")
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        return array

    def _enqueue_then(self, index: int, after_launch: Callable[[int], None] | None) -> Any:
        """Enqueue launch `index`; with a callback, wait for it and call the callback."""
        event = self._enqueue(index)
        if after_launch is not None:
            self.device.queue.finish()
            after_launch(index)
        return event

    def run_launch(self, index: int) -> None:
        """Run launch `index` alone and wait for it (what the cold-start helper does to have
        PoCL compile a kernel; the buffers are this executable's own)."""
        with self.device.lock:
            self._enqueue(index)
            self.device.queue.finish()

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


def _is_event(value: Any) -> bool:
    """True for an OpenCL event (not None, and not a zero-copy wrapper buffer)."""
    return value is not None and hasattr(value, "profile")


def _busy_seconds(events: Sequence[Any]) -> float:
    """Seconds the device spent running `events`' commands (an in-order queue runs one at a
    time, so their durations add up)."""
    return sum((e.profile.end - e.profile.start) * 1e-9 for e in events)


check_variables = _check_variables      # the Vulkan executable checks its variables alike


def plan_buffers(plan: Plan, variables: Mapping[str, Any], allocate: Callable,
                 view: Callable) -> dict[str, Any]:
    """One device buffer per plan buffer, for any backend: a variable's is its ResidentArray's,
    a view is `view(parent buffer, offset, bytes)`, the others `allocate(bytes, name)`."""
    by_buffer = {b.buffer: variables[b.name] for b in plan.variables}
    buffers = {}
    for spec in plan.buffers:
        if spec.role == "variable":
            if spec.name not in by_buffer:
                raise ValueError(f"variable buffer {spec.name!r} has no variable binding")
            buffers[spec.name] = by_buffer[spec.name].buffer
        elif not spec.parent:
            buffers[spec.name] = allocate(spec.nbytes, spec.name)
    for spec in plan.buffers:
        if spec.parent:
            buffers[spec.name] = view(buffers[spec.parent], spec.offset, spec.nbytes)
    return buffers
