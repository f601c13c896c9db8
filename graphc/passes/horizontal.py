"""Horizontal fusion: independent small loop kernels become steps that run as one kernel.

A training step ends in many small kernels that depend on nothing of each other (bias
gradients with their updates, loss reductions); each costs a launch. After scheduling,
each mergeable group joins the earliest mergeable step that nothing between them, nor
that step itself, leads to (data, and the reads of a variable's old value that must
precede its in-place writer); the earliest packs more than the closest (a chain a->b next
to c->d gives steps {a, c}, {b, d}) and moves only small kernels. The memory plan then
treats a step as one kernel: values it reads stay alive until the whole step has run, so
no member overwrites another's input.
The render stage (codegen/program.py, horizontal.py) concatenates the members' ranges into
one launch.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from graphc.codegen.lowerings import lowering_of
from graphc.passes.fuse import Group

MAX_MEMBERS = 8
# Launch overhead dominates kernels of few work items; big ones stay alone, where they
# keep their own launch geometry and their own line in profiles.
MAX_MEMBER_ITEMS = 1 << 15


@dataclass(eq=False)
class Bundle:
    """Groups that run as one kernel: none depends on another."""

    members: list[Group]
    kind: str = "bundle"

    @property
    def stores(self) -> list:
        """What the members store."""
        return [t for g in self.members for t in g.stores]

    @property
    def placed(self) -> dict:
        """The members' values placed in concatenations."""
        return {t: where for g in self.members for t, where in g.placed.items()}


def members(step) -> list[Group]:
    """The groups of a scheduled step (a Group or a Bundle)."""
    return step.members if isinstance(step, Bundle) else [step]


def mergeable(group: Group) -> bool:
    """An elementwise kernel or a plain reduction of few work items (not GEMM, conv, raw)."""
    if group.root.size > MAX_MEMBER_ITEMS:
        return False
    if group.kind == "elementwise":
        return True
    return group.kind == "loop" and lowering_of(group.root.producer.op).bundles


def bundle_steps(order: list[Group], dag) -> list:
    """`order` with each mergeable group moved into the earliest mergeable step after every
    step it depends on (`dag`: kernel dependences over group ids, write-after-read
    included); steps are Groups or Bundles of at most MAX_MEMBERS. A dependent step always
    lies after its sources', so the last step a group must follow is the latest of its
    direct predecessors' (an alias step, which launches nothing, passes on its own
    predecessors'): no scan back over the steps, which made thousands of kernels slow."""
    steps: list = []
    open_steps: list[int] = []      # ascending indices of steps that take another member
    after: dict = {}                # group id -> the step its dependents must follow
    for group in order:
        last = max((after.get(p, -1) for p in dag.predecessors(id(group))), default=-1)
        position = bisect.bisect_right(open_steps, last)
        if not mergeable(group) or position == len(open_steps):
            steps.append(group)
            index = len(steps) - 1
            if mergeable(group):
                open_steps.append(index)
        else:
            index = open_steps[position]
            if isinstance(steps[index], Bundle):
                steps[index].members.append(group)
            else:
                steps[index] = Bundle([steps[index], group])
            if len(steps[index].members) >= MAX_MEMBERS:
                del open_steps[position]
        after[id(group)] = last if group.kind == "alias" else index
    return steps
