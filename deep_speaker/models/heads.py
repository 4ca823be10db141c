"""Refinement heads on a backbone tap.

- dense head on the L2-normalised embedding: Dense -> BN -> ReLU -> Dropout (twice) -> Dense 128 -> L2;
- TDNN head on the backbone's `frames` tap: dilated Conv1D layers, statistics pooling (mean + std),
  Dense to the embedding, L2 - the x-vector meaning of "TDNN".
"""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ConfigError
from ..layers import L2Normalize, StatsPooling

HEAD_TAPS = {"dense": "embedding", "tdnn": "frames"}  # head type -> the tap it reads


def build_dense_head(
    input_dim: int = 512, hidden_units=(512, 512), embedding_dim: int = 128, dropout: float = 0.2, name: str = "dense_head"
) -> keras.Model:
    inputs = keras.Input((input_dim,), name=f"{name}_input")
    x = inputs
    for index, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, name=f"{name}_dense{index}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
    x = layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, L2Normalize(name=f"{name}_ln")(x), name=name)


def build_tdnn_head(
    input_dim: int = 2048,
    channels: int = 512,
    context=((5, 1), (3, 2), (3, 3), (1, 1)),
    embedding_dim: int = 128,
    name: str = "tdnn_head",
) -> keras.Model:
    """Time-delay layers: (kernel, dilation) pairs over frame-level features, then stats pooling."""
    inputs = keras.Input((None, input_dim), name=f"{name}_input")
    x = inputs
    for index, (kernel, dilation) in enumerate(context, start=1):
        x = layers.Conv1D(channels, kernel, dilation_rate=dilation, padding="same", name=f"{name}_tdnn{index}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
    x = StatsPooling(name=f"{name}_stats")(x)
    x = layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, L2Normalize(name=f"{name}_ln")(x), name=name)


HEAD_BUILDERS = {"dense": build_dense_head, "tdnn": build_tdnn_head}


def build_head(head_type: str, backbone: keras.Model, **options) -> keras.Model:
    """A head sized for the tap of `backbone` it reads."""
    if head_type not in HEAD_BUILDERS:
        raise ConfigError(f"unknown head {head_type!r}; choose from {sorted(HEAD_BUILDERS)}")
    input_dim = backbone.output[HEAD_TAPS[head_type]].shape[-1]
    return HEAD_BUILDERS[head_type](input_dim, **options)
