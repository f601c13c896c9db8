"""The plain-data contract between fusion and code generation (as graphc/runtime/launch.py is
between the compiler and the runtime): what each kernel to build computes.

Fusion (passes/fuse.py) decides groups and scheduling (passes/schedule.py, horizontal.py)
orders them; the compiler hands code generation one KernelGroup per kernel to build, and a
KernelBundle for kernels that run as one launch. Code generation imports nothing of fusion.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphc.ir import Tensor

GROUP_KINDS = ("elementwise", "loop", "raw")


@dataclass(frozen=True)
class KernelGroup:
    """One kernel to build: the value it is built around and the values it stores.

    kind: "elementwise" (the root and every store computed inline at the kernel's index),
    "loop" (the root's op loops: a reduction, a contraction, a pooling; the other stores are
    its epilogues) or "raw" (the root's op has a hand-written template; cross-entropy rows
    may store a loss and its gradient)."""

    kind: str
    root: Tensor
    stores: tuple[Tensor, ...]

    def __post_init__(self):
        if self.kind not in GROUP_KINDS:
            raise ValueError(f"kernel group kind {self.kind!r} is not one of {GROUP_KINDS}")


@dataclass(frozen=True)
class KernelBundle:
    """Independent groups that run as one launch (horizontal fusion), in order."""

    members: tuple[KernelGroup, ...]
