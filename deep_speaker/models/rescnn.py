"""ResCNN, the Deep Speaker backbone, with the reference's layer names so legacy weights load by name."""

from __future__ import annotations

import keras
from keras import layers, regularizers

from ..errors import ConfigError
from ..layers import TemporalAverage
from .registry import register_backbone

CLIP_VALUE = 20.0
L2_WEIGHT = 1e-4
STAGE_FILTERS = (64, 128, 256, 512)


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizers.l2(L2_WEIGHT),
        name=name,
    )


def _clipped_relu(name: str) -> layers.ReLU:
    """min(max(x, 0), 20): the reference's clipped ReLU, as a built-in layer."""
    return layers.ReLU(max_value=CLIP_VALUE, name=name)


def _identity_block(x, filters: int, stage: int, block: int):
    base = f"res{stage}_{block}_branch"
    shortcut = x
    x = _conv(filters, 3, 1, f"{base}_2a")(x)
    x = layers.BatchNormalization(name=f"{base}_2a_bn")(x)
    x = _clipped_relu(f"{base}_2a_relu")(x)
    x = _conv(filters, 3, 1, f"{base}_2b")(x)
    x = layers.BatchNormalization(name=f"{base}_2b_bn")(x)
    x = _clipped_relu(f"{base}_2b_relu")(x)
    x = layers.Add(name=f"{base}_add")([x, shortcut])
    return _clipped_relu(f"{base}_out_relu")(x)


def _conv_and_res_block(x, filters: int, stage: int):
    name = f"conv{filters}-s"
    x = _conv(filters, 5, 2, name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = _clipped_relu(f"{name}_relu")(x)
    for block in range(3):
        x = _identity_block(x, filters, stage, block)
    return x


def stage_filters(width: float) -> tuple[int, ...]:
    """Filters of the four stages for a width multiplier (1.0 = the published 64/128/256/512)."""
    return tuple(max(1, int(round(f * width))) for f in STAGE_FILTERS)


@register_backbone("rescnn")
def build_rescnn(
    num_fbanks: int = 64,
    width: float = 1.0,
    embedding_dim: int = 512,
    dropout: float = 0.0,
    name: str = "backbone",
) -> keras.Model:
    """Deep Speaker ResCNN: features (batch, frames, num_fbanks) -> taps `frames`, `embedding` (512-d, `affine`).

    Four stride-2 stages of a 5x5 convolution and three residual blocks (clipped ReLU), the frequency axis
    folded into channels (`frames`: (batch, frames / 16, 4 * filters) for 64 bands), time average, `affine`.
    `width` scales every stage's filters (0.25 gives a CPU-friendly 16/32/64/128 variant). `dropout` before
    `affine` is the reference's for softmax pre-training (0 elsewhere).
    """
    if not width > 0:
        raise ConfigError(f"ResCNN width must be positive, got {width!r}")
    features = keras.Input(shape=(None, num_fbanks), name="features")
    x = layers.Reshape((-1, num_fbanks, 1), name="add_channel")(features)
    for stage, filters in enumerate(stage_filters(width), start=1):
        x = _conv_and_res_block(x, filters, stage)
    frames = layers.Reshape((-1, x.shape[2] * x.shape[3]), name="frames")(x)
    x = TemporalAverage(name="average")(frames)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    embedding = layers.Dense(embedding_dim, name="affine")(x)
    return keras.Model(features, {"frames": frames, "embedding": embedding}, name=name)
