"""Converters of ONNX ops to graphc ops, one module per family (importing them fills
graphc.onnx.registry.CONVERTERS)."""
from graphc.onnx.ops import (attention, control, elementwise, misc, nn, norm,  # noqa: F401
                             generate, grid_sample, pool, reduce, resize, rnn, shape)
