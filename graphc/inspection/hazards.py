"""The plan checker: reads a compiled function's schedule gets wrong (a value read before the
kernel that writes it, or after its buffer was overwritten). The kernels view lists them as
HAZARD lines; GRAPHC_VALIDATE names them when a value diverges."""
from __future__ import annotations

from graphc.codegen.host import host_writes
from graphc.inspection.anatomy import KernelView, anatomy, value_names
from graphc.ir import Tensor


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
