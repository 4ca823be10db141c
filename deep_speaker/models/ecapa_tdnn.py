"""ECAPA-TDNN (Desplanques et al. 2020), laid out as SpeechBrain's `ECAPA_TDNN` (layer names follow its modules)."""

from __future__ import annotations

import keras

from ..errors import ConfigError
from ..layers import AttentiveStatsPooling, ChannelSplit, SqueezeExcitation, tdnn_block
from .registry import register_backbone
from .xvector import scaled


def _res2net(x, channels: int, kernel_size: int, dilation: int, scale: int, name: str):
    """Res2Net: channel groups, each after the first convolved with the previous group's output added."""
    parts = ChannelSplit(scale, name=f"{name}_split")(x)
    outputs, previous = [parts[0]], None
    for index, part in enumerate(parts[1:]):
        if previous is not None:
            part = keras.layers.Add(name=f"{name}_add{index}")([part, previous])
        previous = tdnn_block(part, channels // scale, kernel_size, dilation, name=f"{name}_blocks_{index}")
        outputs.append(previous)
    return keras.layers.Concatenate(name=f"{name}_concat")(outputs)


def _se_res2net_block(x, channels: int, kernel_size: int, dilation: int, scale: int, se_channels: int, name: str):
    shortcut = x
    if x.shape[-1] != channels:
        shortcut = keras.layers.Conv1D(channels, 1, name=f"{name}_shortcut")(x)
    x = tdnn_block(x, channels, 1, 1, name=f"{name}_tdnn1")
    x = _res2net(x, channels, kernel_size, dilation, scale, name=f"{name}_res2net_block")
    x = tdnn_block(x, channels, 1, 1, name=f"{name}_tdnn2")
    x = SqueezeExcitation(se_channels, name=f"{name}_se_block")(x)
    return keras.layers.Add(name=f"{name}_residual")([x, shortcut])


@register_backbone("ecapa_tdnn")
def build_ecapa_tdnn(
    num_fbanks: int = 80,
    width: float = 1.0,
    embedding_dim: int = 192,
    dropout: float = 0.0,
    channels=(512, 512, 512, 512, 1536),
    kernel_sizes=(5, 3, 3, 3, 1),
    dilations=(1, 2, 3, 4, 1),
    attention_channels: int = 128,
    res2net_scale: int = 8,
    se_channels: int = 128,
    global_context: bool = True,
    name: str = "backbone",
) -> keras.Model:
    """A TDNN layer, SE-Res2Net blocks, multi-layer feature aggregation, attentive statistics pooling.

    Taps: `frames` the aggregated frame-level features (the `mfa` output), `embedding` the final linear
    layer (`fc`). Channels default to the paper's C = 512 (1024 for the large model, 256 small; `width`
    scales them, keeping multiples of `res2net_scale`).
    """
    if not len(channels) == len(kernel_sizes) == len(dilations) or len(channels) < 3:
        raise ConfigError("ECAPA-TDNN channels, kernel_sizes and dilations need one entry per block (at least 3)")
    channels = scaled(channels, width, res2net_scale)
    features = keras.Input(shape=(None, num_fbanks), name="features")
    x = tdnn_block(features, channels[0], kernel_sizes[0], dilations[0], name="blocks_0")
    block_outputs = []
    for index in range(1, len(channels) - 1):
        x = _se_res2net_block(x, channels[index], kernel_sizes[index], dilations[index], res2net_scale, se_channels, name=f"blocks_{index}")
        block_outputs.append(x)
    aggregated = keras.layers.Concatenate(name="mfa_concat")(block_outputs) if len(block_outputs) > 1 else block_outputs[0]
    frames = tdnn_block(aggregated, channels[-1], kernel_sizes[-1], dilations[-1], name="mfa")
    frames = keras.layers.Identity(name="frames")(frames)
    pooled = AttentiveStatsPooling(attention_channels, global_context, name="asp")(frames)
    pooled = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="asp_bn")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="dropout")(pooled)
    embedding = keras.layers.Dense(embedding_dim, name="fc")(pooled)
    return keras.Model(features, {"frames": frames, "embedding": embedding}, name=name)
