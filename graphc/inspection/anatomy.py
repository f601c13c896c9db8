"""The anatomy of a compiled function: for each launch, its kernel, what it reads and writes,
and the equations of the optimized graph it computes; the names the views print.

Derived from a compiler `Compiled` (`Function.compiled`). Nothing here depends on object
ids, so the views built on it can be kept as golden files.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from graphc.inspection.printer import as_graph, assign_names, generated_names
from graphc.ir import Graph, Node, Tensor
from graphc.passes.stored import cone

# Buffer names once carried `id()` numbers (`in:x:140170245133824`); the views drop them.
_ID_SUFFIX = re.compile(r":\d{6,}$")


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
    """For each kernel, buffer -> the value it writes there (buffers are reused over time),
    from the kernels' own data (codegen/built.py)."""
    return [dict(kernel.writes) for kernel in compiled.kernels]


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


# ---- what an object to inspect is ----

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
