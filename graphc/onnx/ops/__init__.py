"""Converters of ONNX ops to graphc ops, one module per family (importing them fills
graphc.onnx.registry.CONVERTERS)."""
from graphc.onnx.ops import elementwise, nn, norm, reduce, rnn, shape  # noqa: F401
