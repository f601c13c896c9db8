"""Host steps: each collective of a compiled function becomes a HostCall of its plan.

Fusion gives a collective a group of kind "host" (a kernel boundary: its operand is stored
in a buffer, a reshape of a buffer being read in place) and the scheduler places it as early
as its operand allows, so that the kernels after it can run while the host does the
collective (runtime/host.py). Its outputs are needed back in their buffers only before the
first launch or host call that reads them (`wait`); GRAPHC_OVERLAP=0 waits right away.

Every call carries what the host side needs to check the ranks agree (the graph's
fingerprint, distributed/fingerprint.py) and to say which collective failed, where.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import networkx as nx

from graphc.codegen.lowerings import LOWERINGS, operand_view
from graphc.codegen.movement import contiguous_pieces
from graphc.ir import Tensor
from graphc.ops.registry import get_op
from graphc.runtime import BufferSpec, HostCall, IOBinding, KernelLaunch

HOST_OPS = frozenset(op for op, lowering in LOWERINGS.items() if lowering.kind == "host")
# take a concatenation's pieces as separate inputs
GATHERING_OPS = frozenset(op for op in HOST_OPS if LOWERINGS[op].gathers_pieces)
HOST_PREFIX = "host:"
_plans = itertools.count()          # one key per compiled plan, for the graph check


@dataclass(frozen=True)
class HostStep:
    """A host group and the number of kernel launches scheduled before it."""

    group: object
    position: int


def overlap_enabled() -> bool:
    """GRAPHC_OVERLAP=0 makes every collective finish before the next launch."""
    return os.environ.get("GRAPHC_OVERLAP", "1").strip() != "0"


def collectives_early(groups: list, dag) -> list:
    """The groups in the order that breaks the scheduler's ties: for each collective, in the
    order they were made (a bucket of the last layer's gradients first), what it needs and
    then itself; everything else after. Each collective then starts as soon as it can, and
    the kernels that need its result come as late as they can: the kernels in between run
    while the host does the collective."""
    hosts = sorted((g for g in groups if g.kind == "host"), key=lambda g: g.root.producer.serial)
    if not hosts:
        return groups
    placed: set = set()
    order = []
    for host in hosts:
        needed = nx.ancestors(dag, id(host)) - placed
        order += [g for g in groups if id(g) in needed] + [host]
        placed |= needed | {id(host)}
    return order + [g for g in groups if id(g) not in placed]


def host_operand(t: Tensor, is_buffer) -> Tensor:
    """The value whose buffer holds `t`'s bytes: `t`, or the buffer under its reshapes."""
    view = operand_view(t, is_buffer)
    return view[0] if view is not None and not view[1] else t


def gathered_pieces(t: Tensor, is_buffer) -> list[Tensor] | None:
    """The pieces of `t` when it is a concatenation whose pieces are contiguous blocks of it
    (along axis 0) and each lies in a buffer (itself, or under reshapes): a bucket of
    allreduces, which the host packs itself (one copy on the host beats a kernel that
    selects each element's piece). None otherwise."""
    node = t.producer
    if node is None or node.op != "concatenate" or not contiguous_pieces(t):
        return None
    for piece in node.inputs:
        view = operand_view(piece, is_buffer)
        if view is None or view[1]:
            return None
    return list(node.inputs)


def host_operands(node, is_buffer) -> list[Tensor]:
    """What a collective's host call reads: its operand, or the pieces it gathers."""
    (operand,) = node.inputs
    pieces = gathered_pieces(operand, is_buffer) if node.op in GATHERING_OPS else None
    return pieces if pieces is not None and not is_buffer(operand) else [operand]


def host_leaves(groups) -> set[Tensor]:
    """The leaves host groups read straight from their buffers (a 0-d constant included,
    which kernels would otherwise inline as a literal)."""
    def is_leaf(v):
        return v.producer is None
    leaves = set()
    for group in groups:
        if group.kind != "host":
            continue
        (operand,) = group.root.producer.inputs
        node = operand.producer
        pieces = list(node.inputs) if node is not None and node.op == "concatenate" else []
        for value in [operand] + pieces:        # the pieces, in case the host gathers them
            leaf = host_operand(value, is_leaf)
            if leaf.producer is None:
                leaves.add(leaf)
    return leaves


def host_calls(steps: list[HostStep], buffer_of: dict, launches: tuple[KernelLaunch, ...],
               buffers: dict[str, BufferSpec], label: str, fingerprint: str) -> tuple:
    """The plan's HostCalls, each with the launch it waits before."""
    if not steps:
        return ()
    key = f"{next(_plans)}:{fingerprint}"
    description = _description(label, steps)
    calls = [_call(i, step, buffer_of, (("graph_key", key), ("fingerprint", fingerprint),
                                        ("graph", description)))
             for i, step in enumerate(steps)]
    overlap = overlap_enabled()
    placed = []
    for i, call in enumerate(calls):
        wait = _first_reader(call, calls[i + 1:], launches, buffers) if overlap \
            else call.start
        placed.append(HostCall(call.name, call.function, call.inputs, call.outputs,
                               call.attrs, call.start, wait))
    return tuple(placed)


def _call(index: int, step: HostStep, buffer_of: dict, graph: tuple) -> HostCall:
    t = step.group.root
    node = t.producer
    is_buffer = buffer_of.__contains__
    inputs = tuple(_binding(v, buffer_of[host_operand(v, is_buffer)])
                   for v in host_operands(node, is_buffer))
    template = get_op(node.op).templates["opencl"]
    dims = "_".join(map(str, t.shape)) or "1"
    what = f"{node.op} {t.type} (collective {index + 1} of {dict(graph)['graph']}, created " \
        f"at {node.site or '<unknown>'})"
    attrs = tuple(sorted(node.attrs.items())) + graph + (("what", what),)
    return HostCall(f"{node.op.upper()}_{dims}_{index}", template[len(HOST_PREFIX):],
                    inputs, (_binding(t, buffer_of[t]),), attrs, step.position, step.position)


def _binding(t: Tensor, buffer: str) -> IOBinding:
    return IOBinding(buffer, buffer, t.shape, t.dtype.name)


def _description(label: str, steps: list[HostStep]) -> str:
    """"function 'train_step' (2 collectives: allreduce f32[7850], ...)", a few hundred
    characters at most."""
    ops = [f"{s.group.root.producer.op} {s.group.root.type}" for s in steps]
    text = ", ".join(ops[:6]) + (f" and {len(ops) - 6} more" if len(ops) > 6 else "")
    return f"function {label!r} ({len(ops)} collective(s): {text})"


def _first_reader(call: HostCall, later: list[HostCall], launches, buffers) -> int:
    """The first launch at or after the call's start, or later call, reading its outputs."""
    written = [_extent(b.buffer, buffers) for b in call.outputs]
    first = len(launches)
    for index in range(call.start, len(launches)):
        names = [a.buffer for a in launches[index].args if hasattr(a, "buffer")]
        if any(_overlaps(_extent(n, buffers), w) for n in names for w in written):
            first = index
            break
    for other in later:
        if any(_overlaps(_extent(b.buffer, buffers), w) for b in other.inputs for w in written):
            first = min(first, other.start)
    return first


def _extent(name: str, buffers: dict[str, BufferSpec]) -> tuple[str, int, int]:
    """(root buffer, first byte, end byte) of a plan buffer or view."""
    spec = buffers[name]
    if spec.parent:
        return spec.parent, spec.offset, spec.offset + spec.nbytes
    return name, 0, spec.nbytes


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


# ---- what the dumps say about them ----

def host_writes(compiled) -> list:
    """(HostCall, the value it writes) for each collective of a compiled function."""
    return list(zip(getattr(compiled.plan, "host_calls", ()),
                    getattr(compiled, "host_values", [])))


def host_call_lines(compiled, names: dict, labels: dict) -> list[str]:
    """One line per collective: where it runs among the kernels, what it reads and writes."""
    lines = []
    for call, t in host_writes(compiled):
        wait = f"kernel #{call.wait}" if call.wait < len(compiled.plan.launches) else "the end"
        reads = ", ".join(labels.get(b.buffer, b.buffer) for b in call.inputs)
        writes = ", ".join(f"{labels.get(b.buffer, b.buffer)} <- {names.get(t, '?')}:{t.type}"
                           for b in call.outputs)
        lines.append(f"host {call.name} ({call.function}) starts before kernel #{call.start},"
                     f" done before {wait}: reads {reads}, writes {writes}  # {t.producer.site}")
    return lines
