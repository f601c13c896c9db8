"""Host calls: functions the host runs between a plan's kernels (MPI collectives).

Functions are registered here by name, and a plan's HostCall names one: the runtime never
imports the code that provides them. A function is called as fn(inputs, outputs, attrs):
numpy arrays holding its input buffers, arrays it fills for its output buffers, and a dict.

Calls run in plan order, so that collectives keep one order on every rank: on one worker
thread while several are in flight, on the calling thread when none is. A call whose outputs are read by the very next
launch (wait == start) runs at once: on a device that works in host memory (a CPU, or one
reporting unified memory) its buffers are mapped, not copied. A call with launches before
its wait overlaps them: its inputs are copied out in queue order (so a later kernel may
reuse those buffers), the worker runs it while the device runs the kernels in between, and
its outputs are copied in before launch `wait`. Buffers mapped across launches would be
unsafe (a kernel writing a mapped buffer is undefined), hence the copies there.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ._opencl import require_cl
from .launch import HostCall, IOBinding, Plan

HostFunction = Callable[[list, list, dict], None]
_FUNCTIONS: dict[str, HostFunction] = {}
_WORKER: list[ThreadPoolExecutor] = []


def register_host_function(name: str, function: HostFunction) -> None:
    """Make `function` callable from plans as `name` (registering a name again replaces it)."""
    _FUNCTIONS[name] = function


def host_function(name: str) -> HostFunction:
    """The function registered as `name`; KeyError naming what is registered."""
    if name not in _FUNCTIONS:
        raise KeyError(f"the plan calls host function {name!r}, which is not registered "
                       f"(registered: {sorted(_FUNCTIONS) or 'none'}); graphc's collectives "
                       f"are registered by importing graphc")
    return _FUNCTIONS[name]


def _worker() -> ThreadPoolExecutor:
    if not _WORKER:
        _WORKER.append(ThreadPoolExecutor(1, thread_name_prefix="graphc-host"))
    return _WORKER[0]


class HostSteps:
    """The host calls of one run of a plan: `before(i)` runs what is due before launch i."""

    def __init__(self, plan: Plan, device: Any, buffers: dict, synchronous: bool = False):
        self.device, self.buffers, self.synchronous = device, buffers, synchronous
        self.starts: dict[int, list[HostCall]] = {}
        self.waits: dict[int, list[HostCall]] = {}
        for call in plan.host_calls:
            self.starts.setdefault(call.start, []).append(call)
            self.waits.setdefault(call.wait, []).append(call)
        self.pending: dict[str, Future] = {}
        self.keep: list = []        # copies to the device in flight (their events hold the arrays)
        self.seconds = 0.0          # time in the host functions (inputs ready to outputs done)
        self.mapped = device.unified_memory or device.type == "cpu"

    def before(self, index: int) -> None:
        """Finish the calls due before launch `index`, then start the ones that start there."""
        for call in self.waits.get(index, ()):
            if call.name in self.pending:
                self._finish(call)
        for call in self.starts.get(index, ()):
            if self.synchronous or call.wait == index:
                self._run_now(call)
            else:
                self._start(call)

    def drain(self) -> None:
        """Wait for every call still in flight, ignoring their errors (a run that failed)."""
        for future in self.pending.values():
            try:
                future.result()
            except Exception:       # the run's first error is the one reported
                pass
        self.pending.clear()

    # ---- synchronous: mapped or copied, run here (or after the calls in flight) ----

    def _run_now(self, call: HostCall) -> None:
        if self.mapped:
            self._run_mapped(call)
            return
        inputs = [self._read(b, blocking=True)[0] for b in call.inputs]
        self._write(call, self._result(self._submit(_call, call, inputs, [])))

    def _submit(self, *work) -> Future:
        """Run `work` here when nothing is in flight (no thread hand-off), else after the
        calls in flight, on the worker."""
        if self.pending:
            return _worker().submit(*work)
        future: Future = Future()
        try:
            future.set_result(work[0](*work[1:]))
        except Exception as error:
            future.set_exception(error)
        return future

    def _run_mapped(self, call: HostCall) -> None:
        cl = require_cl()
        maps = []
        try:
            inputs = [self._map(b, cl.map_flags.READ, maps) for b in call.inputs]
            outputs = [self._map(b, cl.map_flags.WRITE_INVALIDATE_REGION, maps)
                       for b in call.outputs]
            self._result(self._submit(_call, call, inputs, [], outputs))
        finally:
            for array in maps:
                array.base.release(self.device.queue)

    def _map(self, binding: IOBinding, flags: Any, maps: list) -> np.ndarray:
        dtype = np.dtype(binding.dtype)
        if int(np.prod(binding.shape, dtype=np.int64)) == 0:
            return np.empty(binding.shape, dtype)
        array, _ = require_cl().enqueue_map_buffer(
            self.device.queue, self.buffers[binding.buffer], flags, 0, tuple(binding.shape),
            dtype, is_blocking=True)
        maps.append(array)
        return array

    # ---- overlapped: copy out now, run on the worker, copy in at the wait ----

    def _start(self, call: HostCall) -> None:
        reads = [self._read(b, blocking=False) for b in call.inputs]
        self.device.queue.flush()       # start the copies: the worker waits for them
        self.pending[call.name] = _worker().submit(_call, call, [a for a, _ in reads],
                                                   [e for _, e in reads if e is not None])

    def _finish(self, call: HostCall) -> None:
        self._write(call, self._result(self.pending.pop(call.name)))

    def _result(self, future: Future) -> list[np.ndarray]:
        outputs, seconds = future.result()
        self.seconds += seconds
        return outputs

    def _read(self, binding: IOBinding, blocking: bool) -> tuple[np.ndarray, Any]:
        array = np.empty(binding.shape, np.dtype(binding.dtype))
        if not array.nbytes:
            return array, None
        event = require_cl().enqueue_copy(self.device.queue, array,
                                          self.buffers[binding.buffer], is_blocking=blocking)
        return array, event

    def _write(self, call: HostCall, outputs: list[np.ndarray]) -> None:
        for binding, array in zip(call.outputs, outputs):
            if array.nbytes:
                self.keep.append(require_cl().enqueue_copy(
                    self.device.queue, self.buffers[binding.buffer], array, is_blocking=False))


def _call(call: HostCall, inputs: list[np.ndarray], events: list,
          outputs: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], float]:
    """On the worker: wait for the input copies, run the function; its outputs and the
    seconds it took."""
    if events:
        require_cl().wait_for_events(events)
    if outputs is None:
        outputs = [np.empty(b.shape, np.dtype(b.dtype)) for b in call.outputs]
    started = time.perf_counter()
    host_function(call.function)(inputs, outputs, dict(call.attrs))
    return outputs, time.perf_counter() - started
