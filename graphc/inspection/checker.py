"""The checked run of GRAPHC_CHECK_NUMERICS=1 and GRAPHC_VALIDATE=1: one call, launch by
launch, each kernel's stores read back and checked (graphc/inspection/debug.py says when).

GRAPHC_CHECK_NUMERICS stops at the first kernel that writes a NaN or an Inf, naming the op
that first produced it and the user's line (NumericsError). GRAPHC_VALIDATE compares every
value a kernel stores with the reference interpreter and names the first that diverges; the
ops of that kernel are then run alone on the device to find which one is wrong
(ValidationError). Both stop at the first kernel whose indexing op (the ops with an
`index_range`) read an index out of range (IndexRangeError, graphc.indexcheck): without
checking, a device clamps such an index and cannot report it. On any failure the variables
get back the values they had before the call.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from graphc.builder import placeholder
from graphc.errors import GraphcError, IndexRangeError, NumericsError, ValidationError
from graphc.function import function
from graphc.indexcheck import first_index_problem
from graphc.inspection.anatomy import anatomy, value_names
from graphc.inspection.context import equation_context
from graphc.inspection.hazards import plan_hazards
from graphc.inspection.printer import is_literal
from graphc.interp import leaf_value, run_node
from graphc.ir import Node, Tensor
from graphc.ops.registry import get_op
from graphc.passes.stored import cone

MAX_ISOLATED = 24                # ops of a diverging kernel re-run alone, at most
RTOL = {2: 1e-2, 4: 2e-3, 8: 1e-7}
ATOL = {2: 1e-2, 4: 1e-4, 8: 1e-9}      # times the values' magnitude (at least 1)

_quiet = contextvars.ContextVar("graphc_debug_quiet", default=False)


@contextlib.contextmanager
def quiet():
    """Functions compiled inside this block are not dumped or checked (debug internals)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def is_quiet() -> bool:
    """Inside `quiet()`: functions compiled or called here are not dumped or checked."""
    return _quiet.get()


def run_checked(fn, arrays, numerics: bool = True, validate: bool = False) -> list:
    """Run one call launch by launch, checking what each kernel stores; raise on a problem."""
    checker = Checker(fn, arrays, numerics, validate)
    results = fn.executable.run(arrays, profile=True, after_launch=checker.after)
    fn.last_profile = list(fn.executable.last_profile)
    if checker.failure is not None:
        checker.restore_variables()
        raise checker.failure
    return results


def read_value(executable, buffer: str, t: Tensor) -> np.ndarray:
    """`t` as stored in device buffer `buffer` (which may be larger than `t`)."""
    storage = np.dtype(np.uint8) if t.dtype == np.bool_ else t.dtype
    host = np.empty(t.shape, storage)
    if host.nbytes and hasattr(executable, "read_buffer"):      # a Vulkan executable
        executable.read_buffer(buffer, host)
    elif host.nbytes:
        import pyopencl as cl
        cl.enqueue_copy(executable.device.queue, host, executable.buffers[buffer],
                        is_blocking=True)
    return host.astype(t.dtype) if storage != t.dtype else host


def first_bad(array: np.ndarray) -> tuple[str, tuple] | None:
    """('NaN' or 'Inf', index) of the first non-finite element, or None."""
    if array.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(bad)), array.shape) if array.ndim else ()
    kind = "NaN" if np.isnan(array[index]) else "Inf"
    return kind, tuple(int(i) for i in index)


class Checker:
    """Reads back what each launch stores and checks it (the after_launch callback)."""

    def __init__(self, fn, arrays, numerics: bool, validate: bool):
        self.fn, self.numerics, self.validate = fn, numerics, validate
        self.compiled = fn.compiled
        self.views = anatomy(self.compiled)
        self.names = value_names(self.compiled, self.views)
        self.stored = set(self.compiled.memory.buffer_of)
        self.step = fn.calls
        self.leaves = _leaf_values(fn, arrays)
        self.device = dict(self.leaves)             # values as the device computed them
        self.reference = dict(self.leaves)          # values as the interpreter computes them
        self.failure: GraphcError | None = None
        if numerics:
            self.failure = self._bad_leaf()
            if self.failure is not None:
                raise self.failure

    def after(self, index: int) -> None:
        """Check launch `index`; keep the first failure (raised once the call is over)."""
        if self.failure is not None:
            return
        view = self.views[index]
        for buffer, t in view.writes.items():
            self.device[t] = read_value(self.fn.executable, buffer, t)
        self.failure = self._check_indices(view)
        if self.failure is not None:
            return
        for buffer, t in view.writes.items():
            if self.numerics:
                self.failure = self._check_finite(view, buffer, t)
            if self.failure is None and self.validate:
                self.failure = self._check_close(view, buffer, t)
            if self.failure is not None:
                return

    def restore_variables(self) -> None:
        """Give every variable the value it had before the failed call."""
        for name, leaf in self.compiled.leaves.items():
            if leaf.role == "variable" and name in self.fn.executable.variables:
                self.fn.executable.variables[name].write(self.leaves[leaf])

    # -- indices --

    def _check_indices(self, view) -> IndexRangeError | None:
        """The first out-of-range index an indexing op of the kernel read, as an error."""
        found = first_index_problem(view.nodes, self.device, self.step)
        if found is None:
            return None
        node, problem = found
        mode = "GRAPHC_CHECK_NUMERICS" if self.numerics else "GRAPHC_VALIDATE"
        return IndexRangeError(f"{mode}: kernel #{view.index} {view.launch.name} read an index"
                               f" out of range: {problem}\n{self._context(node)}")

    # -- numerics --

    def _bad_leaf(self) -> NumericsError | None:
        for leaf, value in self.leaves.items():
            found = first_bad(np.asarray(value)) if leaf.role != "constant" else None
            if found:
                return NumericsError(f"GRAPHC_CHECK_NUMERICS: {leaf.role} {leaf.name!r} "
                                     f"({leaf.type}) holds {found[0]} at index {found[1]} "
                                     f"before any kernel ran\n  created at {leaf.site}")
        return None

    def _check_finite(self, view, buffer: str, t: Tensor) -> NumericsError | None:
        found = first_bad(self.device[t])
        if found is None:
            return None
        source = self._nan_source(t)
        head = (f"GRAPHC_CHECK_NUMERICS: kernel #{view.index} {view.launch.name} wrote "
                f"{found[0]} into {self._describe(t, buffer)}, first at index {found[1]}")
        if source is None:
            why = ("  numpy computes finite values from the same inputs: the kernel itself is "
                   "suspect (run with GRAPHC_VALIDATE=1)")
            return NumericsError("\n".join([head, why, self._context(t.producer)]))
        return NumericsError("\n".join([head, f"  the first op to produce {found[0]}: "
                                        f"{source.op} (at {source.site or '<unknown>'})",
                                        self._context(source)]))

    def _nan_source(self, t: Tensor) -> Node | None:
        """The first equation of `t`'s kernel whose result is not finite from finite inputs."""
        local: dict[Tensor, np.ndarray] = {}
        for node in self._cone_nodes(t):
            args = [local[v] if v in local else self._device_value(v) for v in node.inputs]
            outs = run_node(node, args, self.step)
            local.update(zip(node.outputs, outs))
            if any(first_bad(o) for o in outs) and not any(first_bad(a) for a in args):
                return node
        return None

    def _device_value(self, v: Tensor) -> np.ndarray:
        return self.device[v] if v in self.device else leaf_value(v, {})

    # -- validation --

    def _check_close(self, view, buffer: str, t: Tensor) -> ValidationError | None:
        got, want = self.device[t], self._reference(t)
        if close(got, want, self._scale(t)):
            return None
        lines = [f"GRAPHC_VALIDATE: kernel #{view.index} {view.launch.name} stored "
                 f"{self._describe(t, buffer)}, which differs from the reference "
                 f"interpreter: {difference(got, want)}"]
        hazards = [h for h in plan_hazards(self.compiled, self.views)
                   if h.startswith(f"kernel #{view.index} ")]
        if hazards:
            lines += [f"  the schedule is wrong: {h}" for h in hazards]
            return ValidationError("\n".join(lines + [self._context(t.producer)]))
        culprit = self._isolate(t)
        where = culprit[0] if culprit else t.producer
        if culprit:
            lines.append(f"  culprit: op {where.op} (at {where.site or '<unknown>'}) differs "
                         f"when run alone on the device: {culprit[1]}")
        else:
            lines.append("  each op of the kernel agrees with the reference when run alone: "
                         "the fused kernel is wrong")
        return ValidationError("\n".join(lines + [self._context(where)]))

    def _reference(self, t: Tensor) -> np.ndarray:
        """The interpreter's value of `t` (computed on demand, producers first)."""
        stack = [t]
        while stack:
            v = stack[-1]
            if v in self.reference:
                stack.pop()
                continue
            if v.producer is None:
                self.reference[v] = leaf_value(v, {})
                continue
            missing = [i for i in v.producer.inputs if i not in self.reference]
            if missing:
                stack.extend(missing)
                continue
            node = v.producer
            outs = run_node(node, [self.reference[i] for i in node.inputs], self.step)
            self.reference.update(zip(node.outputs, outs))
        return self.reference[t]

    def _scale(self, t: Tensor) -> float:
        """The magnitude errors are measured against: the value's and its operands'."""
        values = [self._reference(t)]
        if t.producer is not None:
            values += [self._reference(v) for v in t.producer.inputs]
        return max([1.0] + [_magnitude(v) for v in values])

    def _isolate(self, t: Tensor) -> tuple[Node, str] | None:
        """The first op of `t`'s kernel that is wrong alone on the device, and by how much."""
        for node in self._cone_nodes(t)[:MAX_ISOLATED]:
            if get_op(node.op).kind == "random":
                continue
            args = [self._reference(v) for v in node.inputs]
            got = run_alone(node, args, self.fn.device)
            for out, value in zip(node.outputs, got):
                want = self._reference(out)
                if not close(value, want, max([1.0, _magnitude(want)] +
                                              [_magnitude(a) for a in args])):
                    return node, difference(value, want)
        return None

    # -- shared --

    def _cone_nodes(self, t: Tensor) -> list[Node]:
        order = {n: i for i, n in enumerate(self.compiled.graph.nodes)}
        nodes = {v.producer for v in cone(t, self.stored) if v.producer is not None}
        return sorted(nodes, key=lambda n: order.get(n, len(order)))

    def _describe(self, t: Tensor, buffer: str) -> str:
        return f"{self.names.get(t, '?')}:{t.type} (buffer {buffer})"

    def _context(self, node: Node | None) -> str:
        return equation_context(self.compiled.graph, node)


def _leaf_values(fn, arrays) -> dict[Tensor, np.ndarray]:
    """Every leaf's value for this call: feeds, variables (before the call), constants."""
    values = {p: np.asarray(a) for p, a in zip(fn.inputs, arrays)}
    for leaf in fn.compiled.graph.inputs:
        if leaf not in values:
            values[leaf] = np.asarray(leaf_value(leaf, {}))
    return values


def _magnitude(array: np.ndarray) -> float:
    array = np.asarray(array)
    if array.dtype.kind not in "fc" or array.size == 0:
        return 0.0
    finite = np.abs(array[np.isfinite(array)])
    return float(finite.max()) if finite.size else 0.0


def close(got: np.ndarray, want: np.ndarray, scale: float = 1.0) -> bool:
    """Equal for integers and booleans; within the dtype's tolerance for floats."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if want.dtype.kind not in "fc":
        return bool(np.array_equal(got, want))
    size = want.dtype.itemsize
    return bool(np.allclose(got, want, rtol=RTOL.get(size, 1e-3),
                            atol=ATOL.get(size, 1e-4) * scale, equal_nan=True))


def difference(got: np.ndarray, want: np.ndarray) -> str:
    """Where and by how much two arrays differ most."""
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.kind not in "fc":
        index = np.unravel_index(int(np.argmax(got != want)), want.shape) if want.ndim else ()
    else:
        error = np.abs(got.astype(np.float64) - want.astype(np.float64))
        error = np.where(np.isnan(error), np.inf, error)
        index = np.unravel_index(int(np.argmax(error)), want.shape) if want.ndim else ()
    index = tuple(int(i) for i in index)
    return (f"at index {index} the device has {_number(got[index])}, the reference "
            f"{_number(want[index])}")


def _number(value) -> str:
    return f"{float(value):.7g}" if np.asarray(value).dtype.kind in "fc" else str(value)


def run_alone(node: Node, args: list[np.ndarray], device) -> list[np.ndarray]:
    """Compile and run one equation by itself on `device`, fed `args`."""
    inputs, feeds, operands = [], [], []
    for value, array in zip(node.inputs, args):
        if is_literal(value) or value.role == "constant":
            operands.append(value)
            continue
        p = placeholder(value.shape, value.dtype, name=f"in{len(inputs)}")
        inputs.append(p)
        feeds.append(array)
        operands.append(p)
    alone = Node(node.op, operands, node.attrs, [o.type for o in node.outputs], node.site)
    with quiet():
        compiled = function(inputs, list(alone.outputs), device=device, name=f"alone_{node.op}")
        return compiled(*feeds)
