"""The render stage, the last of code generation: the built kernels of a function, in launch
order, become named kernels with their source and one program, through the backend's
renderer (codegen/renderer.py). A bundle's kernels are merged into launches within the
renderer's caps first (codegen/horizontal.py).

A kernel is named after what it is and its source: `label_digest` (E_64_10_1a2b3c), the
digest over its source with the renderer's placeholder name, so identical kernels share a
name and the program holds them once.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from graphc.codegen.built import (STEP_BUFFER, BuiltBundle, BuiltKernel, RenderedKernel,
                                  digest)
from graphc.codegen.horizontal import mergeable_kernel, merge_within_caps

_BUILT_FIELDS = tuple(f.name for f in fields(BuiltKernel))


@dataclass(frozen=True)
class Program:
    """A function's program source and its kernels, in launch order."""

    source: str
    kernels: tuple[RenderedKernel, ...]
    step_ends: tuple[int, ...] = ()     # launches after each step

    def launches_before(self, step: int) -> int:
        """The number of launches of the steps before step `step`."""
        return self.step_ends[step - 1] if step else 0


def render_program(steps: list, renderer, group_size: int) -> Program:
    """The Program of `steps`: per scheduled step, a list of BuiltKernels or a BuiltBundle
    (merged with work groups of `group_size`)."""
    kernels, ends = [], []
    for step in steps:
        if isinstance(step, BuiltBundle):
            kernels += _merged(step, renderer, group_size)
        else:
            kernels += [rendered(k, renderer) for k in step]
        ends.append(len(kernels))
    uses_random = any(STEP_BUFFER in k.args for k in kernels)
    return Program(renderer.program(kernels, uses_random), tuple(kernels), tuple(ends))


def rendered(kernel: BuiltKernel, renderer, members: tuple[str, ...] = ()) -> RenderedKernel:
    """`kernel` named and rendered."""
    source = renderer.render(kernel.body)
    name = f"{kernel.label}_{digest(source.text(source.placeholder))}"
    return RenderedKernel(**{f: getattr(kernel, f) for f in _BUILT_FIELDS}, name=name,
                          source=source.text(name), needs=source.needs, members=members)


def _merged(bundle: BuiltBundle, renderer, group_size: int) -> list[RenderedKernel]:
    """A bundle's launches: the members' first kernels merged, their second ones (the
    combination of a split reduction) merged in turn; any other kernel alone."""
    def render(kernel, members=()):
        return rendered(kernel, renderer, members)
    kernels = []
    for position in range(max(map(len, bundle.members))):
        at = [render(k[position]) for k in bundle.members if len(k) > position]
        merged = [k for k in at if mergeable_kernel(k)]
        alone = [k for k in at if not mergeable_kernel(k)]
        kernels += merge_within_caps(merged, group_size, renderer.caps, render) + alone
    return kernels
