"""Horizontal fusion: independent small loop kernels become steps that run as one kernel.

A training step ends in many small kernels that depend on nothing of each other (bias
gradients with their updates, loss reductions); each costs a launch. After scheduling,
each mergeable group joins the earliest mergeable step that nothing between them, nor
that step itself, leads to (data, and the reads of a variable's old value that must
precede its in-place writer); the earliest packs more than the closest (a chain a->b next
to c->d gives steps {a, c}, {b, d}) and moves only small kernels. The memory plan then
treats a step as one kernel: values it reads stay alive until the whole step has run, so
no member overwrites another's input.
Codegen (codegen/horizontal.py) concatenates the members' ranges into one launch.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphc.passes.fuse import Group
from graphc.passes.reach import Reachability

MAX_MEMBERS = 8
# Launch overhead dominates kernels of few work items; big ones stay alone, where they
# keep their own launch geometry and their own line in profiles.
MAX_MEMBER_ITEMS = 1 << 15
REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin"}


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
    return group.kind == "loop" and group.root.producer.op in REDUCTIONS


def bundle_steps(order: list[Group], dag) -> list:
    """`order` with each mergeable group moved into the closest earlier mergeable step it
    does not depend on (`dag`: kernel dependences over group ids, write-after-read
    included); steps are Groups or Bundles of at most MAX_MEMBERS."""
    reach = Reachability(dag)
    steps: list = []
    for group in order:
        target = _target(steps, group, reach) if mergeable(group) else None
        if target is None:
            steps.append(group)
        elif isinstance(steps[target], Bundle):
            steps[target].members.append(group)
        else:
            steps[target] = Bundle([steps[target], group])
    return steps


def _target(steps: list, group: Group, reach: Reachability) -> int | None:
    """The index of the earliest step `group` can join, scanning back until a kernel that
    `group` depends on (passing a concatenation's alias step is safe: its pieces, which
    block the scan, are the kernels that fill it)."""
    found = None
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if step.kind == "alias":        # launches nothing: what it depends on decides
            continue
        if any(reach.path(id(m), id(group)) for m in members(step)):
            break
        if len(members(step)) < MAX_MEMBERS and all(mergeable(m) for m in members(step)):
            found = index
    return found
