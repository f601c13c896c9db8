"""gc.scan: Theano's loop, unrolled when the graph is built.

    def step(x_t, h, W, U):
        return gc.tanh(x_t @ W + h @ U)
    hs, updates = gc.scan(step, sequences=xs, outputs_info=h0, non_sequences=[W, U])

`fn` is called once per step with, in Theano's order, each sequence's slice for the step,
the previous value of each output that has an initial value in `outputs_info`, then the
`non_sequences`. The outputs come back stacked along a new first axis (steps, ...), the
initial values left out, as Theano returns them; `updates` is an empty dict (there are no
shared-variable updates inside a graphc step).

Why unrolled: graphc compiles a static graph, and a step loop kept as a loop would run on
the host, launching each step's kernels and waiting for them: slower than the unrolled
graph, whose steps the compiler fuses and schedules together. So scan builds exactly the
graph a Python loop would (tests check the kernel counts are equal), and its gradient is
the gradient of that graph. The cost is graph size: compile time grows with n_steps.
"""
from __future__ import annotations

from graphc.builder import as_tensor
from graphc.errors import GraphcError, ShapeError
from graphc.ir import Tensor
from graphc.ops.movement import stack

MAX_STEPS = 10_000


def _tensors(value, what: str) -> list[Tensor]:
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, dict):
            raise GraphcError(f"scan: {what} given as a dict (taps): graphc's scan takes "
                              f"tensors only (one step back for outputs, the current step "
                              f"for sequences)")
    return [None if item is None else as_tensor(item) for item in items]


def _step_count(sequences: list[Tensor], n_steps) -> int:
    lengths = []
    for i, seq in enumerate(sequences):
        if seq.ndim == 0:
            raise ShapeError(f"scan: sequence {i} is a scalar; sequences are iterated over "
                             f"their first axis")
        lengths.append(seq.shape[0])
    if n_steps is None:
        if not lengths:
            raise GraphcError("scan: give sequences or n_steps")
        return min(lengths)
    n_steps = int(n_steps)
    if n_steps < 0 or (lengths and n_steps > min(lengths)):
        raise GraphcError(f"scan: n_steps={n_steps} must be in [0, {min(lengths)}] (the "
                          f"shortest sequence)" if lengths else
                          f"scan: n_steps={n_steps} must be >= 0")
    return n_steps


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
         go_backwards: bool = False, name: str | None = None, return_list: bool = False):
    """Theano's scan, unrolled: (outputs, updates); see the module docstring."""
    sequences = _tensors(sequences, "sequences")
    initial = _tensors(outputs_info, "outputs_info")
    constants = _tensors(non_sequences, "non_sequences")
    steps = _step_count(sequences, n_steps)
    if steps == 0:
        raise GraphcError("scan: zero steps: there is nothing to stack")
    if steps > MAX_STEPS:
        raise GraphcError(f"scan: {steps} steps; scan unrolls, and graphs of more than "
                          f"{MAX_STEPS} steps take too long to compile")
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    previous = [value for value in initial if value is not None]
    results: list[list[Tensor]] | None = None
    for t in order:
        outs = _step_outputs(fn(*[seq[t] for seq in sequences], *previous, *constants))
        if results is None:
            results = [[] for _ in outs]
            _check_feedback(initial, outs)
        if len(outs) != len(results):
            raise GraphcError(f"scan: fn returned {len(outs)} outputs at step {t}, "
                              f"{len(results)} before")
        previous = _fed_back(initial, outs)
        for collected, value in zip(results, outs):
            collected.append(value)
    stacked = [stack(values, axis=0) for values in results]
    outputs = stacked if return_list or len(stacked) != 1 else stacked[0]
    return outputs, {}


def _step_outputs(value) -> list[Tensor]:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        raise GraphcError("scan: fn returned updates; graphc's scan takes no updates inside "
                          "the loop (return the new values as outputs instead)")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return [as_tensor(item) for item in items]


def _check_feedback(initial: list, outs: list[Tensor]) -> None:
    if initial and len(initial) != len(outs):
        raise GraphcError(f"scan: outputs_info has {len(initial)} entries, fn returns "
                          f"{len(outs)} outputs (use None for outputs not fed back)")
    for i, (start, out) in enumerate(zip(initial, outs)):
        if start is not None and (start.shape != out.shape or start.dtype != out.dtype):
            raise ShapeError(f"scan: output {i} is {out.type} but its initial value is "
                             f"{start.type}: what is fed back must keep its shape and dtype")


def _fed_back(initial: list, outs: list[Tensor]) -> list[Tensor]:
    if not initial:
        return []
    return [out for start, out in zip(initial, outs) if start is not None]
