"""The graphc error hierarchy: every error names the node and the user's source line."""
from __future__ import annotations

from graphc.runtime.errors import (CompileError, DeviceError, ExportError, FeedError,
                                   GraphcError, LaunchError)

__all__ = [
    "GraphcError", "ShapeError", "DTypeError", "FeedError", "VerifyError", "ParseError",
    "DisconnectedError", "NonDifferentiableError", "RewriteError", "CodegenError",
    "CompileError", "DeviceError", "LaunchError", "NumericsError", "ValidationError",
    "CheckpointError", "TruthValueError", "IndexRangeError", "ExportError",
]


class ShapeError(GraphcError, ValueError):
    """Operand shapes do not fit the op."""


class DTypeError(GraphcError, TypeError):
    """Operand dtypes do not fit the op, or a dtype graphc does not support."""


class VerifyError(GraphcError):
    """A graph breaks an IR invariant (single assignment, def-before-use, types)."""


class ParseError(GraphcError, ValueError):
    """IR text that does not parse."""


class DisconnectedError(GraphcError, ValueError):
    """The cost does not depend on a tensor we were asked to differentiate by."""


class NonDifferentiableError(GraphcError, TypeError):
    """A gradient was requested through an op or dtype that has none."""


class RewriteError(GraphcError):
    """A rewrite pass failed or did not converge."""


class CodegenError(GraphcError):
    """Code generation could not lower a graph."""


class NumericsError(GraphcError, FloatingPointError):
    """A kernel produced NaN or Inf (GRAPHC_CHECK_NUMERICS=1)."""


class ValidationError(GraphcError):
    """A kernel's result diverged from the reference interpreter (GRAPHC_VALIDATE=1)."""


class CheckpointError(GraphcError, ValueError):
    """A saved model or weights file that cannot be loaded (corrupt, incomplete, hostile or
    mismatched); the message names the file and the entry or field."""


class TruthValueError(GraphcError, TypeError):
    """A symbolic tensor was used where Python needs a bool (`if t:`, `and`, `bool(t)`)."""


class IndexRangeError(GraphcError, IndexError):
    """An index or label fed to an indexing op is out of range (the interpreter, and
    GRAPHC_CHECK_NUMERICS / GRAPHC_VALIDATE on a device)."""
