"""gc.nn: Keras-like layers, models, training."""
from graphc.nn.base import Layer, register_layer
