"""The plain-data contract between the compiler's code generator and the runtime.

A Plan is one compiled function. Its single program source holds every __kernel it launches
(each identical kernel once). Every buffer is a BufferSpec; kernels name buffers through
BufferArg. Inputs and outputs bind function arguments and results to buffers. A 'variable'
buffer is not allocated by the Executable: it is the buffer of the ResidentArray passed for
the variable binding of the same buffer, keyed by the binding's name, so several plans can
share one variable; after each run every variable of the plan is taken as written.
A HostCall is a step the host runs between two launches (a collective through MPI): it
reads its input buffers, calls a function registered by name with runtime.host, and writes
its outputs back (runtime/host.py).
"""
from __future__ import annotations

from dataclasses import dataclass

BUFFER_ROLES = ("scratch", "input", "output", "variable")


@dataclass(frozen=True)
class BufferArg:
    """A kernel argument that names a buffer of the plan."""

    buffer: str


@dataclass(frozen=True)
class ScalarArg:
    """A kernel argument passed by value; `dtype` is a numpy dtype name ('int32', ...)."""

    value: int | float
    dtype: str


@dataclass(frozen=True)
class KernelLaunch:
    """One enqueue of a __kernel function of the plan's program, with its geometry and cost."""

    name: str
    args: tuple[BufferArg | ScalarArg, ...]
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None = None
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class BufferSpec:
    """A device buffer the plan needs; role is 'scratch', 'input', 'output' or 'variable'.
    With a `parent`, it is a view: bytes [offset, offset + nbytes) of that buffer (an OpenCL
    sub-buffer; the offset a multiple of the device's base address alignment)."""

    name: str
    nbytes: int
    role: str
    parent: str = ""
    offset: int = 0


@dataclass(frozen=True)
class IOBinding:
    """Ties a function input, output or variable to a plan buffer, with its array type."""

    name: str
    buffer: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class HostCall:
    """A host function run between kernels, on arrays read from and written to buffers.

    It starts before launch `start` (its inputs are final once the launches before it have
    run) and its outputs are in their buffers before launch `wait` (>= start: the first
    launch or host call that reads them; len(launches): at the end of the run). Launches
    in between run while the host works. `attrs` are (key, value) pairs for the function."""

    name: str
    function: str
    inputs: tuple[IOBinding, ...]
    outputs: tuple[IOBinding, ...]
    attrs: tuple[tuple[str, object], ...] = ()
    start: int = 0
    wait: int = 0


@dataclass(frozen=True)
class Plan:
    """One compiled function: a single program source holding every kernel, and its launches."""

    source: str
    build_options: str
    buffers: tuple[BufferSpec, ...]
    inputs: tuple[IOBinding, ...]
    outputs: tuple[IOBinding, ...]
    variables: tuple[IOBinding, ...]
    launches: tuple[KernelLaunch, ...]
    host_calls: tuple[HostCall, ...] = ()

    def buffer(self, name: str) -> BufferSpec:
        """The BufferSpec called `name` (KeyError when the plan has none)."""
        for spec in self.buffers:
            if spec.name == name:
                return spec
        raise KeyError(f"plan has no buffer {name!r}")


def binding_nbytes(binding: IOBinding) -> int:
    """Bytes of the array a binding describes."""
    count = 1
    for dim in binding.shape:
        count *= int(dim)
    return count * _itemsize(binding.dtype)


def _itemsize(dtype: str) -> int:
    """Item size of a numpy dtype name, imported lazily to keep this module plain data."""
    import numpy as np

    return np.dtype(dtype).itemsize


def plan_problems(plan: Plan) -> list[str]:
    """Every inconsistency of a plan (unknown buffers, bad roles or sizes); [] when sound."""
    specs = {spec.name: spec for spec in plan.buffers}
    names = [spec.name for spec in plan.buffers]
    problems = [f"duplicate buffer {n!r}" for n in sorted(set(names)) if names.count(n) > 1]
    problems += [f"buffer {s.name!r}: role {s.role!r} is not one of {BUFFER_ROLES}"
                 for s in plan.buffers if s.role not in BUFFER_ROLES]
    problems += [f"buffer {s.name!r}: negative size {s.nbytes}" for s in plan.buffers
                 if s.nbytes < 0]
    problems += [_view_problem(s, specs) for s in plan.buffers if s.parent]
    for kind, bindings in (("input", plan.inputs), ("output", plan.outputs),
                           ("variable", plan.variables)):
        problems += [_binding_problem(kind, b, specs) for b in bindings]
    for launch in plan.launches:
        problems += [_launch_problem(launch, specs)]
    problems += [_host_call_problem(call, specs, len(plan.launches)) for call in plan.host_calls]
    return [problem for problem in problems if problem]


def _binding_problem(kind: str, binding: IOBinding, specs: dict[str, BufferSpec]) -> str:
    """Why a binding is wrong, or ''."""
    spec = specs.get(binding.buffer)
    if spec is None:
        return f"{kind} {binding.name!r} names unknown buffer {binding.buffer!r}"
    if binding_nbytes(binding) > spec.nbytes:
        return (f"{kind} {binding.name!r} needs {binding_nbytes(binding)} bytes but buffer "
                f"{spec.name!r} has {spec.nbytes}")
    if kind == "variable" and spec.role != "variable":
        return f"variable {binding.name!r} is bound to {spec.role} buffer {spec.name!r}"
    return ""


def _view_problem(spec: BufferSpec, specs: dict[str, BufferSpec]) -> str:
    """Why a view buffer is wrong, or ''."""
    parent = specs.get(spec.parent)
    if parent is None or parent.parent:
        return f"view {spec.name!r} of {spec.parent!r}, which is not a plain buffer of the plan"
    if spec.offset < 0 or spec.offset + spec.nbytes > parent.nbytes:
        return (f"view {spec.name!r}: bytes {spec.offset}..{spec.offset + spec.nbytes} are "
                f"outside {parent.name!r} ({parent.nbytes} bytes)")
    return ""


def _launch_problem(launch: KernelLaunch, specs: dict[str, BufferSpec]) -> str:
    """Why a launch is wrong, or ''."""
    unknown = [a.buffer for a in launch.args if isinstance(a, BufferArg) and a.buffer not in specs]
    if unknown:
        return f"kernel {launch.name!r} names unknown buffers {unknown}"
    if not 1 <= len(launch.global_size) <= 3:
        return f"kernel {launch.name!r}: global size {launch.global_size} must have 1-3 dims"
    if launch.local_size is not None and len(launch.local_size) != len(launch.global_size):
        return (f"kernel {launch.name!r}: local size {launch.local_size} and global size "
                f"{launch.global_size} differ in rank")
    return ""


def _host_call_problem(call: HostCall, specs: dict[str, BufferSpec], launches: int) -> str:
    """Why a host call is wrong, or ''."""
    if not 0 <= call.start <= call.wait <= launches:
        return (f"host call {call.name!r}: start {call.start} and wait {call.wait} must "
                f"satisfy 0 <= start <= wait <= {launches} (the launch count)")
    problems = [_binding_problem(f"host call {call.name!r} argument", b, specs)
                for b in call.inputs + call.outputs]
    return "; ".join(p for p in problems if p)
