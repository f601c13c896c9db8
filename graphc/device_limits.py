"""A compiled function's buffers against the device's memory, named after the user's ops.

Checked twice, before anything is built: right after the memory plan (inputs, outputs,
scratch, variables and constants; no kernel has been generated yet), and once the kernels
are generated, with the private buffers some of them add (partial results of split
reductions), before the runtime builds the program. The runtime's check (graphc.runtime
.limits) gives the verdict; this module only says what each buffer holds and where the
user created it.
"""
from __future__ import annotations

from graphc.runtime.limits import BufferNeed, check_fits, check_plan_fits


def check_memory_plan(device, inputs, memory, leaf_map) -> dict[str, str]:
    """Refuse (DeviceError) a memory plan that does not fit the device; return what each
    buffer holds, for the second check (check_kernels)."""
    what = describe_buffers(inputs, memory, leaf_map)
    check_fits(device, planned_needs(inputs, memory, leaf_map, what))
    return what


def check_kernels(device, plan, kernels, what: dict[str, str]) -> None:
    """Refuse a plan whose buffers, kernels' private ones included, do not fit the device."""
    described = dict(what)
    for kernel in kernels:
        for name, _ in kernel.private:
            described[name] = (f"partial results of kernel {kernel.name} "
                               f"({', '.join(kernel.ops) or 'no ops'})")
    check_plan_fits(device, plan, described)


def planned_needs(inputs, memory, leaf_map, what: dict[str, str]) -> list[BufferNeed]:
    """One allocation per buffer the plan will make, sized as compiler._plan sizes them."""
    sizes: dict[str, int] = {}
    for p in inputs:
        name = leaf_map.get(p) or f"in:{p.name}"
        sizes[name] = max(p.type.nbytes, 1)
    for t, name in memory.buffer_of.items():
        if name not in memory.views:
            size = max(memory.sizes.get(name, t.type.nbytes), 1)
            sizes[name] = max(sizes.get(name, 0), size)
    for leaf, name in leaf_map.items():
        if leaf.role != "placeholder":
            sizes[name] = max(leaf.type.nbytes, 1)
    return [BufferNeed(name, nbytes, what.get(name, "")) for name, nbytes in sizes.items()]


def describe_buffers(inputs, memory, leaf_map) -> dict[str, str]:
    """Buffer name -> what it holds: the op computing it (the biggest value a reused
    scratch buffer holds) or the leaf, with the user's line."""
    what: dict[str, str] = {}
    biggest: dict[str, list] = {}
    for t, name in memory.buffer_of.items():
        biggest.setdefault(name, []).append(t)
    for name, values in biggest.items():
        values.sort(key=lambda t: -t.type.nbytes)
        what[name] = _computed_text(name, values[0], len(values) - 1)
    for leaf, name in leaf_map.items():
        what[name] = _leaf_text(leaf)
    for p in inputs:
        what.setdefault(f"in:{p.name}", _leaf_text(p))
    return what


def _computed_text(buffer: str, t, others: int) -> str:
    node = t.producer
    op = node.op if node is not None else (t.role or "value")
    site = t.site or (node.site if node is not None else "")
    role = f"output {buffer[3:]} of the function" if buffer.startswith("out") \
        else "an intermediate value"
    text = f"{role}, computed by {op} ({t.type}), created at {site or '<unknown>'}"
    if others:
        text += f" (the biggest of {others + 1} values the buffer holds in turn)"
    return text


def _leaf_text(leaf) -> str:
    kind = {"placeholder": "input", "variable": "variable", "constant": "constant"}.get(
        leaf.role, leaf.role)
    name = f" {leaf.name!r}" if leaf.name else ""
    return f"{kind}{name} ({leaf.type}), created at {leaf.site or '<unknown>'}"
