"""Import ONNX models as graphc graphs: run them on any OpenCL device, differentiate them,
fine-tune them.

    import graphc as gc, graphc.onnx
    model = graphc.onnx.load("resnet.onnx", input_shapes={"input": (64, 3, 224, 224)})
    (probs,) = model(images)                       # compiled for these shapes, cached
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, model.outputs[0], True))
    grads = gc.grad(loss, list(model.variables.values()))

Graph inputs become placeholders, initializers variables (floats: trainable state that
`gc.grad` and the optimizers work on) or constants (integers and bools), nodes graphc ops.
Everything computable at import (Shape of a static shape, Constant, ops on constants) is
folded to constants there. A symbolic dimension is bound from `input_shapes` or from the
first arrays the model is called with; a call with other shapes builds and compiles another
specialization, kept in a cache keyed by the shapes. An op, attribute, dtype or opset graphc
cannot run exactly is an `OnnxImportError` at load time naming the op type, the node and the
opset, never a wrong number at run time.

`graphc.onnx.backend` is an `onnx.backend.base.Backend` for ONNX's own test runner. The
`onnx` package is the optional extra `graphc[onnx]`.
"""
from __future__ import annotations

import importlib

from graphc.onnx.errors import OnnxImportError, UnsupportedError

__all__ = ["load", "OnnxModel", "OnnxImportError", "UnsupportedError", "backend"]


def load(model_or_path, input_shapes=None, device=None):
    """An `OnnxModel` of an ONNX model (a path, bytes or an `onnx.ModelProto`).

    input_shapes: {input name: shape} binding symbolic dimensions (and checked against the
    static ones); without it the first call binds them. device: where calls compile and run
    (as gc.function's `device`)."""
    from graphc.onnx.model import OnnxModel
    return OnnxModel(model_or_path, input_shapes=input_shapes, device=device)


def __getattr__(name):
    if name == "OnnxModel":
        return importlib.import_module("graphc.onnx.model").OnnxModel
    if name == "backend":
        return importlib.import_module("graphc.onnx.backend")
    raise AttributeError(f"module 'graphc.onnx' has no attribute {name!r}")
