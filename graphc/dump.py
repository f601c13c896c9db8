"""Text views of a compiled function: kernels, the equations fused into each, buffers, memory.

The compiled view is derived from `Function.compiled` (a `Compiled`): each kernel's launch
geometry and cost, the buffers it reads and writes, and the equations of the optimized graph
it computes, named as `gc.dump(fn, stage="optimized")` names them. Nothing in the text
depends on object ids, so it can be kept as a golden file.
"""
from __future__ import annotations

import re
import sys
import types
from collections import Counter
from dataclasses import dataclass

from graphc.codegen.host import host_call_lines, host_writes
from graphc.ir import Graph, Node, Tensor, position_of
from graphc.passes.fuse import cone
from graphc.printer import assign_names, format_equation, generated_names, with_sites

# Buffer names once carried `id()` numbers (`in:x:140170245133824`); the views drop them.
_ID_SUFFIX = re.compile(r":\d{6,}$")


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def function_summary(fn) -> str:
    """Pipeline summary (GRAPHC_DEBUG=1)."""
    c = fn.compiled
    passes = ", ".join(f"{r.name} {r.seconds * 1e3:.1f}ms" for r in c.pass_records)
    return (f"graphc: {fn.name}: {len(c.graph.nodes)} ops -> {fn.kernel_count} kernels "
            f"({len({k.name for k in c.kernels})} distinct), planned peak "
            f"{_mib(peak_bytes(fn))}, compiled in {fn.compile_seconds:.2f}s on "
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


# ---- the anatomy of a compiled function ----

@dataclass(frozen=True)
class KernelView:
    """One launch as the dumps show it: what it reads, writes and computes."""

    index: int
    kernel: object                  # codegen BuiltKernel
    launch: object                  # runtime KernelLaunch
    reads: tuple[str, ...]
    writes: dict                    # buffer name -> the value the kernel stores there
    nodes: tuple[Node, ...]         # the equations it computes, in graph order

    @property
    def derived_ops(self) -> Counter:
        """`op # site` of the equations found for this kernel, to compare with kernel.ops."""
        return Counter(f"{n.op} # {n.site}" for n in self.nodes)


def anatomy(compiled) -> list[KernelView]:
    """One KernelView per launch, in launch order."""
    stored = set(compiled.memory.buffer_of)
    position = _positions(compiled.graph)
    views = []
    for index, (kernel, writes) in enumerate(zip(compiled.kernels, stored_by_kernel(compiled))):
        nodes = {v.producer for t in writes.values() for v in cone(t, stored)
                 if v.producer is not None}
        ordered = tuple(sorted(nodes, key=lambda n: position.get(n, len(position))))
        reads = tuple(dict.fromkeys(     # a merged kernel may take a buffer more than once
            a for a in kernel.args
            if a not in writes or compiled.leaves.get(a) in _operands(ordered)))
        views.append(KernelView(index, kernel, compiled.plan.launches[index], reads, writes,
                                ordered))
    return views


def _operands(nodes) -> set[Tensor]:
    return {t for node in nodes for t in node.inputs}


def _positions(graph: Graph) -> dict[Node, int]:
    return {node: i for i, node in enumerate(graph.nodes)}


def stored_by_kernel(compiled) -> list[dict[str, Tensor]]:
    """For each kernel, buffer -> the value it writes there (buffers are reused over time)."""
    groups = getattr(compiled, "groups", None)      # exact, when the compiler keeps them
    if groups is not None:
        return [{compiled.memory.buffer_of[t]: t for t in g.stores} for g in groups]
    stored = set(compiled.memory.buffer_of)
    position = _positions(compiled.graph)
    pending: dict[str, list[Tensor]] = {}
    for t in sorted(stored, key=lambda t: position.get(t.producer, len(position))):
        pending.setdefault(compiled.memory.buffer_of[t], []).append(t)
    result = []
    for kernel in compiled.kernels:
        writes = {}
        for buffer in written_buffers(kernel):
            t = _writer_match(pending.get(buffer, []), kernel, stored)
            if t is not None:
                pending[buffer] = [c for c in pending[buffer] if c is not t]
                writes[buffer] = t
        result.append(writes)
    return result


def _writer_match(candidates: list[Tensor], kernel, stored: set) -> Tensor | None:
    """The first candidate whose equations and shape fit the kernel best."""
    if not candidates:
        return None
    ops = Counter(kernel.ops)
    return max(candidates, key=lambda t: (_fits_ops(t, ops, stored), _fits_name(t, kernel),
                                          -position_of(t, candidates)))


def _fits_ops(t: Tensor, ops: Counter, stored: set) -> bool:
    needed = Counter(f"{v.producer.op} # {v.producer.site}" for v in cone(t, stored)
                     if v.producer is not None)
    return not needed - ops


def _fits_name(t: Tensor, kernel) -> bool:
    dims = "_".join(map(str, t.shape)) or "1"
    return f"_{dims}_" in kernel.name


def written_buffers(kernel) -> list[str]:
    """The arguments a kernel writes: its `__global` parameters not declared const."""
    params = kernel_params(kernel.source, kernel.name)
    if len(params) != len(kernel.args):
        return list(kernel.args)
    return [arg for arg, p in zip(kernel.args, params) if "const" not in p.split("*")[0]]


def kernel_params(source: str, name: str) -> list[str]:
    """The `__global` parameter declarations of `__kernel void name(...)` in `source`."""
    match = re.search(r"__kernel\s+void\s+" + re.escape(name) + r"\s*\(([^)]*)\)", source)
    if match is None:
        return []
    return [p.strip() for p in match.group(1).split(",") if "__global" in p]


def plan_hazards(compiled, views: list[KernelView] | None = None) -> list[str]:
    """Reads the schedule gets wrong: a value read before the kernel that writes it, or after
    its buffer was overwritten (a reused scratch buffer, a variable updated in place). Views
    (passes/views.py) count as their bytes of the parent buffer."""
    views = views if views is not None else anatomy(compiled)
    names = value_names(compiled, views)
    writer = {t: v.index for v in views for t in v.writes.values()}
    region = _regions(compiled)
    writes = [(view.index, region(buffer)) for view in views for buffer in view.writes]
    for call, t in host_writes(compiled):       # a collective writes between two kernels
        writer[t] = call.start - 0.5
        writes += [(call.start - 0.5, region(b.buffer)) for b in call.outputs]
    leaf_buffer = {leaf: name for name, leaf in compiled.leaves.items()}
    problems = []
    for view in views:
        for u in _values_read(view, compiled):
            buffer = compiled.memory.buffer_of.get(u) or leaf_buffer.get(u)
            here = region(buffer)
            overlapping = [m for m, r in writes if _overlap(r, here) and m < view.index]
            first = writer.get(u, max(overlapping, default=-1) if _holds_views(u, compiled)
                               else -1)
            where = f"kernel #{view.index} {view.launch.name} reads {names.get(u, u.name)}"
            if first > view.index:
                problems.append(f"{where} before kernel #{first} writes it ({buffer})")
            later = [m for m in overlapping if first < m]
            if later:
                problems.append(f"{where} from {buffer} after kernel #{later[0]} overwrote it")
    return problems


def _regions(compiled):
    """buffer -> (the buffer it lies in, first byte, end byte); end None for whole buffers."""
    plan_views = getattr(compiled.memory, "views", {})

    def region(buffer):
        if buffer in plan_views:
            parent, offset, nbytes = plan_views[buffer]
            return parent, offset, offset + nbytes
        return buffer, 0, None
    return region


def _overlap(a, b) -> bool:
    if a[0] != b[0]:
        return False
    return (a[2] is None or b[1] < a[2]) and (b[2] is None or a[1] < b[2])


def _holds_views(t: Tensor, compiled) -> bool:
    """Is `t` a concatenation its pieces' kernels wrote in place (no kernel of its own)?"""
    buffer = compiled.memory.buffer_of.get(t)
    return any(parent == buffer or name == buffer
               for name, (parent, _, _) in getattr(compiled.memory, "views", {}).items())


def _values_read(view: KernelView, compiled) -> list[Tensor]:
    """Stored values and variables the kernel's equations load from buffers."""
    made = {out for node in view.nodes for out in node.outputs}
    read = [t for node in view.nodes for t in node.inputs if t not in made and
            (t in compiled.memory.buffer_of or t.role == "variable")]
    return list(dict.fromkeys(read))


# ---- names ----

def value_names(compiled, views: list[KernelView] | None = None) -> dict[Tensor, str]:
    """Printed names of the optimized graph, plus fresh ones for the compiler's own copies."""
    names = assign_names(compiled.graph)
    fresh = (n for n in generated_names() if n not in set(names.values()))
    for view in views or anatomy(compiled):
        for node in view.nodes:
            for t in (*node.inputs, *node.outputs):
                if t not in names and t.producer is not None:
                    names[t] = next(fresh)
    return names


def buffer_labels(compiled) -> dict[str, str]:
    """Each plan buffer's printed name: without id() suffixes, still unique."""
    labels, taken = {}, Counter()
    for spec in compiled.plan.buffers:
        base = _ID_SUFFIX.sub("", spec.name)
        taken[base] += 1
        labels[spec.name] = base if taken[base] == 1 else f"{base}#{taken[base]}"
    return labels


# ---- the kernels view ----

def format_kernels(compiled, name: str = "function", device: str | None = None,
                   source: bool = False) -> str:
    """Kernels (geometry, cost, buffers, fused equations with sites), buffers, peak memory."""
    views = anatomy(compiled)
    names = value_names(compiled, views)
    labels = buffer_labels(compiled)
    where = f" on {device}" if device else ""
    lines = [f"function {name}{where}: {len(views)} kernels, {len(compiled.plan.buffers)} "
             f"buffers, planned peak {_mib(plan_bytes(compiled))}"]
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
    lines.append(f"planned peak memory: {_mib(plan_bytes(compiled))} (scratch {_mib(scratch)})")
    return lines


# ---- gc.dump ----

FORMATS = ("text", "dot", "svg", "html")
STAGES = ("graph", "optimized", "kernels")


def render(obj, format: str = "text", stage: str = "graph", source: bool = False) -> str:
    """gc.dump's dispatcher (see graphc.printer.dump)."""
    if format not in FORMATS:
        raise ValueError(f"unknown dump format {format!r}: expected one of {', '.join(FORMATS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown dump stage {stage!r}: expected one of {', '.join(STAGES)}")
    if format == "html":
        from graphc.report import html_page
        return html_page(obj, stage)
    if format in ("dot", "svg"):
        from graphc.dot import dot_of, render_svg
        text = dot_of(obj, stage)
        return text if format == "dot" else render_svg(text)
    return text_of(obj, stage, source)


def text_of(obj, stage: str, source: bool = False) -> str:
    """The text dump of `obj` at `stage`."""
    if stage == "kernels":
        compiled, name, device = compiled_parts(obj)
        return format_kernels(compiled, name, device, source)
    return str(graph_of(obj, stage))


def is_compiled(obj) -> bool:
    """A Function (anything with `.compiled`) or a compiler `Compiled` itself."""
    return hasattr(obj, "compiled") or (hasattr(obj, "plan") and hasattr(obj, "kernels"))


def compiled_parts(obj) -> tuple:
    """(Compiled, function name, device name) of a Function or a Compiled."""
    if hasattr(obj, "compiled"):
        device = getattr(obj, "device", None)
        return obj.compiled, obj.name, getattr(device, "name", None)
    if is_compiled(obj):
        return obj, "function", None
    raise ValueError("stage='kernels' needs a compiled function (gc.function(...)), got "
                     f"{type(obj).__name__}")


def graph_of(obj, stage: str) -> Graph:
    """The graph of `obj` as built ("graph") or after the graph passes ("optimized")."""
    from graphc.printer import as_graph
    if stage == "optimized":
        if is_compiled(obj):
            return compiled_parts(obj)[0].graph
        from graphc.passes.pipeline import optimize
        return optimize(as_graph(obj))[0]
    if hasattr(obj, "compiled"):
        return user_graph(obj)
    if is_compiled(obj):
        raise ValueError("a Compiled keeps only its optimized graph: use stage='optimized'")
    return as_graph(obj)



def user_graph(fn) -> Graph:
    """The graph a Function was asked to compute: its outputs, then its variables' updates."""
    outputs = list(fn.outputs) + [value for _, value in fn.updates]
    return Graph.from_outputs(outputs, inputs=fn.inputs, name=_ident(fn.name))


def _ident(name: str) -> str:
    return name if name.isidentifier() else "graph"


class _CallableModule(types.ModuleType):
    """Importing graphc.dump rebinds the attribute `graphc.dump` (the gc.dump function) to
    this module; calling the module keeps gc.dump(...) working all the same."""

    def __call__(self, *args, **kwargs):
        from graphc.printer import dump
        return dump(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
