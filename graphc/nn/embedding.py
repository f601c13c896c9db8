"""Embedding: integer ids to rows of a trainable (input_dim, output_dim) table; PositionEmbedding:
learned positions of a sequence."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import initializers
from graphc.nn.base import Layer, register_layer


@register_layer
class Embedding(Layer):
    """Keras's Embedding: ids of any shape (batch, ...) → (batch, ..., output_dim) by gc.take."""

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 dtype="float32", name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """The table (input_dim, output_dim)."""
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer,
                                          dtype=self.dtype)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.dtype.kind != "i":
            x = gc.cast(x, gc.int32)        # Keras casts float ids too
        return gc.take(self.embeddings, x, axis=0)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "dtype": self.dtype.name}


@register_layer
class PositionEmbedding(Layer):
    """Learned position embeddings (keras_hub's PositionEmbedding): a trainable
    (sequence_length, features) table whose first `steps` rows are returned, broadcast to
    the input's (batch, steps, features) shape; add them to the input (gc.nn.Add)."""

    def __init__(self, sequence_length: int, initializer="glorot_uniform", dtype="float32",
                 name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if int(sequence_length) <= 0:
            raise ValueError(f"PositionEmbedding: sequence_length must be positive, got "
                             f"{sequence_length}")
        self.sequence_length = int(sequence_length)
        self.initializer = initializers.get(initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """The table (sequence_length, features)."""
        if len(input_shape) != 2:
            raise gc.ShapeError(f"PositionEmbedding {self.name}: expects (batch, steps, "
                                f"features) input, got per-example shape {input_shape}")
        self.embeddings = self.add_weight("embeddings", (self.sequence_length, input_shape[1]),
                                          self.initializer, dtype=self.dtype)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        steps = x.shape[1]
        if steps > self.sequence_length:
            raise gc.ShapeError(f"PositionEmbedding {self.name}: {steps} steps, but the table"
                                f" holds {self.sequence_length} positions")
        table = self.embeddings if steps == self.sequence_length else self.embeddings[:steps]
        return gc.broadcast_to(gc.reshape(table, (1,) + table.shape), x.shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": initializers.serialize(self.initializer),
                "dtype": self.dtype.name}
