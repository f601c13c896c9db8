"""gc.function: compile once, call many times (numpy in, numpy out, state on the device)."""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from graphc import config
from graphc.builder import as_tensor, cast
from graphc.compiler import Compiled, compile_graph
from graphc.errors import DTypeError, FeedError, GraphcError, ShapeError
from graphc.feeds import check_feed
from graphc.ir import Tensor
from graphc.runtime import Executable, ResidentArray, select_device
from graphc.runtime.profiling import format_profile


@dataclass
class FunctionHooks:
    """Where inspection and the checking modes plug into every Function, so that this module
    imports none of them (graphc/inspection/debug.py registers its hooks when imported).

    compiled: hook(fn), run at the end of compiling.
    called:   hook(fn, feeds) -> results or None, run before each call under the device lock;
              the first hook that returns results has run the call itself (a checked run).
    views:    "dump" (fn, source) -> str and "summary" (fn) -> str: fn.dump(), fn.summary().
    """

    compiled: list[Callable] = field(default_factory=list)
    called: list[Callable] = field(default_factory=list)
    views: dict[str, Callable] = field(default_factory=dict)


HOOKS = FunctionHooks()


def function(inputs, outputs, updates=None, device=None, name: str = "function",
             givens=None) -> "Function":
    """Compile `outputs` (a tensor or a list) and `updates` [(variable, new value)] of `inputs`.
    `givens` ({old: new} or pairs, Theano's) substitutes subgraphs before compiling."""
    return Function(inputs, outputs, updates or [], device, name, givens)


class Function:
    """A compiled graph: call it with one numpy array per input, by position or by the
    placeholder's name (`f(x=..., y=...)`)."""

    def __init__(self, inputs, outputs, updates, device, name, givens=None):
        self.name = name
        self.inputs = _check_placeholders(inputs)
        self.single = isinstance(outputs, Tensor)
        self.outputs = [as_tensor(o) for o in ([outputs] if self.single else outputs)]
        self.updates = [_check_update(v, u) for v, u in updates]
        if givens:
            self._substitute(givens)
        self.device = select_device(device)
        started = time.perf_counter()
        with _collector_paused():
            self.compiled: Compiled = compile_graph(self.inputs, self.outputs, self.updates,
                                                    self.device, name)
            with self.device.lock:      # one ResidentArray per variable and device
                residents = self._residents()
            self.executable = Executable(self.device, self.compiled.plan, residents)
        self.compile_seconds = time.perf_counter() - started
        self.calls = 0
        self.last_profile: list[tuple[str, float]] = []
        self.last_timing = None     # a StepTiming after profile()
        self._reads_step = any(b.name == "graphc_step" for b in self.compiled.plan.inputs)
        for hook in HOOKS.compiled:
            hook(self)

    def _residents(self) -> dict:
        residents = {}
        for name, leaf in self.compiled.leaves.items():
            if leaf.role == "variable":
                store = leaf.data.resident
                if self.device not in store:
                    store[self.device] = ResidentArray(self.device, leaf.data.array, leaf.name)
                residents[name] = store[self.device]
            else:
                residents[name] = ResidentArray(self.device, leaf.data, name)
        return residents

    def _substitute(self, givens) -> None:
        """Theano's givens: outputs and update values rebuilt over the replacements."""
        from graphc.substitute import replacement_pairs, substitute
        pairs = replacement_pairs(givens)
        inputs = {id(p) for p in self.inputs}
        for old, _ in pairs:
            if id(old) in inputs:
                raise GraphcError(f"function {self.name!r}: input {old.name!r} cannot also be"
                                  f" replaced by givens (drop it from the inputs)")
        values = substitute(self.outputs + [u for _, u in self.updates],
                            {id(old): new for old, new in pairs})
        self.outputs = values[:len(self.outputs)]
        self.updates = [(v, u) for (v, _), u in zip(self.updates, values[len(self.outputs):])]

    def _bind(self, feeds, named: dict) -> list:
        """Positional feeds, then keyword feeds by placeholder name, in input order."""
        if not named:
            return list(feeds)
        if len(feeds) > len(self.inputs):
            return list(feeds) + list(named.values())     # _checked says how many
        names = [p.name for p in self.inputs]
        bound: list = list(feeds) + [_MISSING] * (len(self.inputs) - len(feeds))
        for key, value in named.items():
            if names.count(key) != 1:
                listed = ", ".join(str(n) for n in names)
                problem = "has several inputs named" if names.count(key) else \
                    "has no input named"
                raise FeedError(f"function {self.name!r} {problem} {key!r} (inputs: "
                                f"{listed}); pass it by position")
            index = names.index(key)
            if bound[index] is not _MISSING:
                raise FeedError(f"function {self.name!r}: input {key!r} is given twice (by "
                                f"position and by name)")
            bound[index] = value
        missing = [str(n) for n, v in zip(names, bound) if v is _MISSING]
        if missing:
            raise FeedError(f"function {self.name!r}: no value for input(s) "
                            f"{', '.join(missing)}")
        return bound

    def __call__(self, *feeds, **named):
        """Run once; returns the outputs (a list, or one array when outputs was a tensor).

        Thread-safe: calls on one device run one at a time (Device.lock), because a call
        writes the function's own input, output and scratch buffers and its variables."""
        arrays = self._checked(self._bind(feeds, named))
        profile = config.debug_level() >= 2
        with self.device.lock:
            arrays = self._with_step(arrays)
            results = self._hooked_call(arrays)         # GRAPHC_DUMP/CHECK_NUMERICS/...
            if results is None:
                results = self.executable.run(arrays, profile=profile)
            self.calls += 1
            if profile:
                self.last_profile = list(self.executable.last_profile)
                print(format_profile(self.compiled.plan.launches, self.last_profile))
        return results[0] if self.single else results

    def _hooked_call(self, arrays: list[np.ndarray]) -> list | None:
        """The results of the first call hook that runs the call itself, or None."""
        for hook in HOOKS.called:
            results = hook(self, arrays)
            if results is not None:
                return results
        return None

    def call_async(self, *feeds, **named) -> "PendingCall":
        """Enqueue a call and return at once; `.result()` waits and returns what calling
        would. Calls run in order on the device, so the next call (or a variable's
        get_value) sees this one's updates, and the host can prepare the next batch while
        the device works. The fed arrays must not change until result() returns. Debugging
        and profiling modes (GRAPHC_DEBUG >= 2, GRAPHC_CHECK_NUMERICS, ...) run it at once."""
        if config.debug_level() >= 2:
            return PendingCall(self.single, None, self(*feeds, **named), unwrap=False)
        arrays = self._checked(self._bind(feeds, named))
        with self.device.lock:
            arrays = self._with_step(arrays)
            results = self._hooked_call(arrays)
            pending = self.executable.run_async(arrays) if results is None else None
            self.calls += 1
        return PendingCall(self.single, pending, results)

    def _check_feeds(self, feeds) -> list[np.ndarray]:
        """The checked feeds, with the call counter when the plan reads one."""
        return self._with_step(self._checked(feeds))

    def _checked(self, feeds) -> list[np.ndarray]:
        if len(feeds) != len(self.inputs):
            names = ", ".join(p.name for p in self.inputs)
            raise FeedError(f"function {self.name!r} takes {len(self.inputs)} inputs ({names}),"
                            f" got {len(feeds)}")
        return [check_feed(p, v) for p, v in zip(self.inputs, feeds)]

    def _with_step(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The feeds plus the call counter random ops read (under the device lock, so no
        two calls draw the same numbers)."""
        if self._reads_step:
            return arrays + [np.array([self.calls], np.uint64)]
        return arrays

    def profile(self, *feeds, **named) -> list[tuple[str, float]]:
        """Run once with OpenCL event timing; per-kernel (name, seconds) in launch order.
        `last_timing` then holds the call's wall time (from this method's start, feed
        checks included), the device's busy time and their difference, the host overhead."""
        started = time.perf_counter()
        arrays = self._checked(self._bind(feeds, named))
        with self.device.lock:
            self.executable.run(self._with_step(arrays), profile=True)
            self.calls += 1
            self.last_profile = list(self.executable.last_profile)
            self.last_timing = replace(self.executable.last_timing, started=started)
            return self.last_profile

    def export(self, path, **options):
        """Write this function to the folder `path` for graphc.runtime.load (graphc/export.py:
        name=, output_names=, batch_size=)."""
        from graphc.export import export_function
        return export_function(self, path, **options)

    @property
    def kernel_count(self) -> int:
        """Kernel launches per call."""
        return len(self.compiled.plan.launches)

    def summary(self) -> str:
        """One paragraph: passes, kernels, memory, compile time."""
        return _view("summary")(self)

    def dump(self, source: bool = False) -> str:
        """Each kernel with its fused ops and their lines, the buffer plan, the peak memory."""
        return _view("dump")(self, source=source)


def _view(name: str) -> Callable:
    try:
        return HOOKS.views[name]
    except KeyError:
        raise GraphcError(f"fn.{name}() needs graphc.inspection.debug, which `import graphc` "
                          f"loads") from None


class PendingCall:
    """A call enqueued by Function.call_async."""

    def __init__(self, single: bool, pending, results, unwrap: bool = True):
        self._single = single and unwrap
        self._pending = pending
        self._results = results

    def result(self):
        """The outputs (one array when the function has one output), waiting for them."""
        results = self._results if self._pending is None else self._pending.result()
        return results[0] if self._single else results


_MISSING = object()


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while compiling: the passes allocate tens of thousands
    of small objects, which trigger full collections that walk every live object (LSTM
    step: ~10% of compile time); the garbage is collected once the collector is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_placeholders(inputs) -> list[Tensor]:
    inputs = list(inputs)
    for p in inputs:
        if not isinstance(p, Tensor) or p.role != "placeholder":
            raise GraphcError(f"function inputs must be placeholders, got {p!r}")
    return inputs


def _check_update(variable, value) -> tuple[Tensor, Tensor]:
    if not isinstance(variable, Tensor) or variable.role != "variable":
        raise GraphcError(f"updates must be (variable, new value) pairs; {variable!r} is not a"
                          f" variable")
    value = as_tensor(value, variable.dtype)
    if value.shape != variable.shape:
        raise ShapeError(f"update of variable {variable.name!r}: new value has shape "
                         f"{value.shape}, the variable {variable.shape} (created at "
                         f"{value.site or variable.site})")
    if value.dtype != variable.dtype:
        if value.dtype.kind != variable.dtype.kind:
            raise DTypeError(f"update of variable {variable.name!r}: new value is "
                             f"{value.dtype.name}, the variable {variable.dtype.name}")
        value = cast(value, variable.dtype)
    return variable, value
