"""The op registry (graphc/ops/registry.py) and the op families that fill it.

Adding an op is one `register(OpDef(...))` block in the module of its family, which imports
`graphc.ops.registry`; `load_all` imports every family, so the registry is complete.
"""
from __future__ import annotations

from graphc.ops.registry import (KINDS, REGISTRY, IndexRange, NonDifferentiable,  # noqa: F401
                                 OpDef, get_op, register)


def load_all() -> dict[str, OpDef]:
    """Import every op family so the registry is complete."""
    from graphc.ops import (collective, elementwise, layer_norm, linalg,  # noqa: F401
                            movement, nn, random, reduction)
    return REGISTRY
