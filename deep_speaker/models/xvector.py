"""x-vector TDNN (Snyder et al. 2018), laid out as SpeechBrain's `Xvector`."""

from __future__ import annotations

import keras

from ..errors import ConfigError
from ..layers import StatsPooling, tdnn_block
from .registry import register_backbone


def scaled(channels, width: float, multiple: int = 1) -> tuple[int, ...]:
    """Channel counts times `width`, rounded to a positive multiple of `multiple`."""
    if not width > 0:
        raise ConfigError(f"width must be positive, got {width!r}")
    return tuple(max(multiple, int(round(c * width / multiple)) * multiple) for c in channels)


@register_backbone("xvector")
def build_xvector(
    num_fbanks: int = 64,
    width: float = 1.0,
    embedding_dim: int = 512,
    dropout: float = 0.0,
    channels=(512, 512, 512, 512, 1500),
    kernel_sizes=(5, 3, 3, 1, 1),
    dilations=(1, 2, 3, 1, 1),
    name: str = "backbone",
) -> keras.Model:
    """Five frame-level TDNN layers (Conv1d, LeakyReLU, BatchNorm), statistics pooling, one linear layer.

    Taps: `frames` the last TDNN layer's output, `embedding` the linear layer's (the x-vector). `width`
    scales every layer's channels (0.5 gives 256 / 750).
    """
    if not len(channels) == len(kernel_sizes) == len(dilations):
        raise ConfigError("x-vector channels, kernel_sizes and dilations need one entry per layer")
    features = keras.Input(shape=(None, num_fbanks), name="features")
    x = features
    for index, (units, kernel, dilation) in enumerate(zip(scaled(channels, width), kernel_sizes, dilations)):
        x = tdnn_block(x, units, kernel, dilation, name=f"blocks_{index}", activation="leaky_relu")
    frames = keras.layers.Identity(name="frames")(x)
    pooled = StatsPooling(name="pooling")(frames)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="dropout")(pooled)
    embedding = keras.layers.Dense(embedding_dim, name="embedding")(pooled)
    return keras.Model(features, {"frames": frames, "embedding": embedding}, name=name)
