"""Errors of the ONNX importer: each names the op type, the node and the opset."""
from __future__ import annotations

from graphc.errors import GraphcError


class OnnxImportError(GraphcError, ValueError):
    """An ONNX model graphc cannot import: a bad file, or a node it cannot convert."""


class UnsupportedError(OnnxImportError, NotImplementedError):
    """An op, attribute, dtype or opset that graphc cannot run exactly."""


class NeedsValue(Exception):
    """Raised inside a converter when an operand that must be known at import (a shape, axes,
    pads...) is a graph input: the model then binds that input's value, not only its shape."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def node_label(node, opset: int) -> str:
    """`Conv node 'conv1' (opset 17)`: how every importer error names a node."""
    name = f" {node.name!r}" if node.name else " (unnamed)"
    domain = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
    return f"{domain}{node.op_type} node{name} (opset {opset})"
