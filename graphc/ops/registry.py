"""The op registry: one `OpDef` record per op holds everything graphc knows about it.

Adding an op is one `register(OpDef(...))` block in the module of its family; tests are
generated from `REGISTRY`. Fields a later stage fills (gradient, code templates) are part
of the record from the start, so `test_registry` can check that none is missing. How an op
becomes kernel code is in the lowering registry, graphc/codegen/lowerings.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

KINDS = ("elementwise", "reduction", "movement", "contraction", "opaque", "random",
         "collective")


class NonDifferentiable:
    """Marker for `OpDef.vjp`: the op has no gradient (integer, boolean or random output)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"NonDifferentiable({self.reason!r})"


@dataclass(frozen=True)
class IndexRange:
    """The valid values of an op's integer index operand: [low, high) (numpy.take's
    negatives from the end included where the op allows them)."""

    operand: int                # which input holds the indices
    low: int
    high: int
    role: str                   # what one value is: "index", "label"
    of: str                     # what it indexes: "axis 0 of size 5", "7 classes"

    @property
    def roles(self) -> str:
        return "indices" if self.role == "index" else self.role + "s"


@dataclass(frozen=True)
class OpDef:
    """Everything about one op.

    infer(types, **attrs) -> TensorType   shape/dtype rule; raises ShapeError/DTypeError
    ref(*arrays, **attrs) -> ndarray      numpy reference (the interpreter's semantics)
    vjp(cotangent, output, *inputs, **attrs) -> list of input cotangents (None = zero),
        each of the broadcast output shape or the input's shape; autodiff sums them to
        the input's shape centrally. Or a NonDifferentiable marker.
    templates: language -> the expression an elementwise op computes, over its operands
        {0}, {1}, ... in the language's computing type {T} ("opencl": OpenCL C). Other ops
        have none: how they become kernels is the lowering registry's
        (graphc/codegen/lowerings.py), whose hand-written templates each renderer has.
    index_range(types, **attrs) -> IndexRange | None: for ops that read at data-dependent
        positions, which values of which operand are valid. Out of range, the interpreter
        and GRAPHC_CHECK_NUMERICS / GRAPHC_VALIDATE raise IndexRangeError; device kernels
        stay inside their buffers (they clamp or select nothing) but have no error channel.
    """

    name: str
    kind: str
    arity: int | None                      # None: variadic
    attrs: tuple[str, ...]
    infer: Callable
    ref: Callable
    vjp: Callable | NonDifferentiable
    templates: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""
    commutative: bool = False
    index_range: Callable | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"op {self.name}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def differentiable(self) -> bool:
        return not isinstance(self.vjp, NonDifferentiable)


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    """Add an op to the registry (once)."""
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name} registered twice")
    REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    """The record of op `name`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None
