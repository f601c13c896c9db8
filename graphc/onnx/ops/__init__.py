"""Converters of ONNX ops to graphc ops, one module per family (importing them fills
graphc.onnx.registry.CONVERTERS)."""
from graphc.onnx.ops import (attention, elementwise, misc, nn, norm, reduce,  # noqa: F401
                             pool, resize, rnn, shape)
