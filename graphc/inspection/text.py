"""Text views of a compiled function: kernels, the equations fused into each, buffers, memory
(`gc.dump(fn, stage="kernels")`, `fn.dump()`), and the pipeline summary (GRAPHC_DEBUG=1)."""
from __future__ import annotations

from collections import Counter

from graphc.codegen.host import host_call_lines
from graphc.inspection.anatomy import (KernelView, anatomy, buffer_labels, compiled_parts,
                                       graph_of, value_names)
from graphc.inspection.hazards import plan_hazards
from graphc.inspection.printer import format_equation, with_sites


def mib(n: int) -> str:
    """Bytes as `1.50 MiB` or `12.0 KiB`."""
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def function_summary(fn) -> str:
    """Pipeline summary (GRAPHC_DEBUG=1)."""
    c = fn.compiled
    passes = ", ".join(f"{r.name} {r.seconds * 1e3:.1f}ms" for r in c.pass_records)
    return (f"graphc: {fn.name}: {len(c.graph.nodes)} ops -> {fn.kernel_count} kernels "
            f"({len({k.name for k in c.kernels})} distinct), planned peak "
            f"{mib(peak_bytes(fn))}, compiled in {fn.compile_seconds:.2f}s on "
            f"{fn.device.name}\n  passes: {passes}")


def peak_bytes(fn) -> int:
    """Planned device memory: every buffer of the plan, variables included."""
    return plan_bytes(fn.compiled)


def plan_bytes(compiled) -> int:
    """Bytes of every buffer of a compiled plan, variables included."""
    return sum(b.nbytes for b in compiled.plan.buffers)


def format_function(fn, source: bool = False) -> str:
    """The compiled view of a function (Function.dump)."""
    return format_kernels(fn.compiled, fn.name, fn.device.name, source)


# ---- the kernels view ----

def format_kernels(compiled, name: str = "function", device: str | None = None,
                   source: bool = False) -> str:
    """Kernels (geometry, cost, buffers, fused equations with sites), buffers, peak memory."""
    views = anatomy(compiled)
    names = value_names(compiled, views)
    labels = buffer_labels(compiled)
    where = f" on {device}" if device else ""
    lines = [f"function {name}{where}: {len(views)} kernels, {len(compiled.plan.buffers)} "
             f"buffers, planned peak {mib(plan_bytes(compiled))}"]
    for view in views:
        lines += ["", *kernel_lines(view, names, labels)]
    hosts = host_call_lines(compiled, names, labels)
    lines += ["", "collectives (run by the host):", *hosts] if hosts else []
    lines += ["", *buffer_lines(compiled, names, labels)]
    lines += [f"HAZARD: {problem}" for problem in plan_hazards(compiled, views)]
    if source:
        lines += ["", "source:", compiled.plan.source]
    return "\n".join(lines)


def kernel_lines(view: KernelView, names: dict, labels: dict) -> list[str]:
    """A kernel's header, its buffers, and the equations it computes."""
    launch = view.launch
    head = (f"kernel #{view.index} {launch.name}  global={_dims(launch.global_size)} "
            f"local={_dims(launch.local_size)}  flops={launch.flops}  "
            f"read={launch.bytes_read} B  written={launch.bytes_written} B")
    writes = ", ".join(f"{labels.get(b, b)} <- {names.get(t, '?')}:{t.type}"
                       for b, t in view.writes.items())
    lines = [head, f"  reads  {', '.join(labels.get(b, b) for b in view.reads) or '-'}",
             f"  writes {writes or '-'}"]
    if view.kernel.members:
        lines.append(f"  merges {', '.join(view.kernel.members)}")
    return lines + ["  " + line for line in equation_lines(view, names)]


def equation_lines(view: KernelView, names: dict) -> list[str]:
    """The kernel's equations with sites; its codegen op list when they cannot be matched
    (a GEMM reads a transpose as a layout and does not list it: extra equations are fine).
    A horizontally merged kernel lists its members' equations, then the ops of members that
    store no planned value (the partial sums of a split reduction)."""
    unmatched = Counter(view.kernel.ops) - view.derived_ops
    if unmatched and not view.kernel.members:
        return [f"fuses {op}" for op in view.kernel.ops]
    body = [format_equation(node, names) for node in view.nodes]
    return with_sites(body, [node.site for node in view.nodes]) + \
        [f"fuses {op}" for op in unmatched.elements()]


def _dims(size) -> str:
    return "-" if size is None else "x".join(map(str, size))


def buffer_lines(compiled, names: dict, labels: dict) -> list[str]:
    """One line per plan buffer: role, size, the values it holds over a call."""
    held: dict[str, list[str]] = {}
    for t, buffer in compiled.memory.buffer_of.items():
        held.setdefault(buffer, []).append(names.get(t, "?"))
    for leaf_buffer, leaf in compiled.leaves.items():
        held.setdefault(leaf_buffer, []).insert(0, names.get(leaf, leaf.name or "?"))
    for binding in compiled.plan.inputs:
        label = labels.get(binding.buffer, binding.buffer)
        held.setdefault(binding.buffer, []).insert(0, label.removeprefix("in:"))
    width = max([len(v) for v in labels.values()] + [6])
    lines = ["buffers:"]
    for spec in compiled.plan.buffers:
        values = ", ".join(dict.fromkeys(held.get(spec.name, [])))
        lines.append(f"  {labels[spec.name]:<{width}}  {spec.role:<8} {spec.nbytes:>10} B"
                     f"  {values}".rstrip())
    scratch = sum(s.nbytes for s in compiled.plan.buffers if s.role == "scratch")
    lines.append(f"planned peak memory: {mib(plan_bytes(compiled))} (scratch {mib(scratch)})")
    return lines


def text_of(obj, stage: str, source: bool = False) -> str:
    """The text dump of `obj` at `stage`."""
    if stage == "kernels":
        compiled, name, device = compiled_parts(obj)
        return format_kernels(compiled, name, device, source)
    return str(graph_of(obj, stage))
