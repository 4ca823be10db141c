"""Refinement heads on a ResCNN base, and the fused model that carries base, head and fusion together.

- dense head on the 512-d embedding: Dense -> BN -> ReLU -> Dropout (twice) -> Dense 128 -> L2;
- TDNN head on ResCNN's frame-level output (before temporal averaging): dilated Conv1D layers,
  statistics pooling (mean + std), Dense to the embedding, L2 - the x-vector meaning of "TDNN".
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np
from keras import layers

from ..layers import EmbeddingFusion, L2Normalize, StatsPooling

HEAD_TYPES = ("dense", "tdnn")
FRAME_LAYER = "reshape"  # ResCNN's (batch, frames / 16, 4 * filters) output, before `average`


def build_dense_head(input_dim: int = 512, hidden_units=(512, 512), embedding_dim: int = 128, dropout: float = 0.2, name: str = "dense_head") -> keras.Model:
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


def build_head(head_type: str, base: keras.Model, **kwargs) -> keras.Model:
    """A head sized for `base`: the dense head takes its embedding, the TDNN head its frame-level output."""
    if head_type == "dense":
        return build_dense_head(base.output_shape[-1], **kwargs)
    if head_type == "tdnn":
        return build_tdnn_head(base.get_layer(FRAME_LAYER).output.shape[-1], **kwargs)
    raise ValueError(f"unknown head {head_type!r}; choose from {HEAD_TYPES}")


def head_input_model(base: keras.Model, head_type: str) -> keras.Model:
    """fbank -> what the head reads (the embedding, or the frame-level features)."""
    return base if head_type == "dense" else keras.Model(base.input, base.get_layer(FRAME_LAYER).output, name="frames")


def weights_fingerprint(model: keras.Model) -> str:
    """Digest of a model's weight values: identifies the exact base a head was trained on."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def build_fused(base: keras.Model, head: keras.Model, head_type: str, fusion: str = "head", weight: float = 0.5, trained: bool = False) -> keras.Model:
    """fbank -> fused embedding: one model carrying base, head and the fusion choice."""
    head_inputs = head_input_model(base, head_type).output
    fused = EmbeddingFusion(fusion, weight, trained=trained, base_fingerprint=weights_fingerprint(base), name="fusion")
    return keras.Model(base.input, fused([base.output, head(head_inputs)]), name=f"{base.name}_{head_type}_{fusion}")


def base_of(fused: keras.Model) -> keras.Model:
    """The ResCNN embedding model inside a fused model (shares its layers)."""
    return keras.Model(fused.input, fused.get_layer("ln").output, name="base")
