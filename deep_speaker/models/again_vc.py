"""AGAIN-VC, a one-shot voice converter (Chen, Wu, Lee 2021: "AGAIN-VC: A One-shot Voice Conversion using
Activation Guidance and Adaptive Instance Normalization"), on log-mel spectrograms; trained in `tf/again_vc.py`,
vocoded back to audio in `adversarial/conversion.py`.

One encoder: a 1x1 convolution, then residual convolution blocks, each followed by instance normalisation over
time whose removed mean and spread (per channel) are kept as the speaker's statistics; a 1x1 convolution to a few
content channels and the activation guide, sigmoid(alpha x), the information bottleneck that leaves timbre out of
the content. The decoder starts from the source's content scaled by the target content's statistics, and after
each of its blocks re-normalises and applies the target's statistics of the matching encoder block (adaptive
instance normalisation); a two-layer GRU, primed with the last block's mean, and a dense layer give the mel frames.
Training reconstructs a segment from its own content and the statistics of the segment with its halves swapped.

Channels-last throughout: (batch, frames, mel bins); every layer is `keras.ops`, so the model runs on any backend.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

NEGATIVE_SLOPE = 0.01  # PyTorch's LeakyReLU default, as in the original


def _normalise_over_time(x, epsilon: float):
    """Instance normalisation over frames: (x normalised, mean, spread), per example and channel."""
    mean = ops.mean(x, axis=1, keepdims=True)
    spread = ops.sqrt(ops.var(x, axis=1, keepdims=True) + epsilon)
    return (x - mean) / spread, mean, spread


@keras.saving.register_keras_serializable(package="deep_speaker")
class InstanceStatistics(layers.Layer):
    """x (batch, frames, channels) -> [x normalised over frames, mean (batch, 1, channels), spread (batch, 1, channels)]."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return list(_normalise_over_time(x, self.epsilon))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ApplyStatistics(layers.Layer):
    """[x, mean, spread] -> x x spread + mean; with `normalise`, x is first instance-normalised (AdaIN)."""

    def __init__(self, normalise: bool = True, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.normalise, self.epsilon = normalise, epsilon

    def call(self, inputs):
        x, mean, spread = inputs
        if self.normalise:
            x, _, _ = _normalise_over_time(x, self.epsilon)
        return x * spread + mean

    def get_config(self):
        return {**super().get_config(), "normalise": self.normalise, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ActivationGuide(layers.Layer):
    """sigmoid(alpha x): the content bottleneck (alpha 0.1 in the paper)."""

    def __init__(self, alpha: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x):
        return ops.sigmoid(self.alpha * x)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="deep_speaker")
class PrependFrame(layers.Layer):
    """[frames (batch, T, C), frame (batch, 1, C)] -> (batch, T + 1, C), the frame first."""

    def call(self, inputs):
        frames, frame = inputs
        return ops.concatenate([frame, frames], axis=1)


@keras.saving.register_keras_serializable(package="deep_speaker")
class DropFirstFrame(layers.Layer):
    """(batch, T + 1, C) -> (batch, T, C)."""

    def call(self, frames):
        return frames[:, 1:]


def _conv(channels: int, kernel: int, name: str) -> layers.Conv1D:
    return layers.Conv1D(channels, kernel, padding="same", kernel_initializer="glorot_uniform", name=name)


def _conv_stack(x, channels: int, name: str):
    """conv 3 -> batch norm -> leaky ReLU -> conv 3 (the original's block body)."""
    y = _conv(channels, 3, f"{name}_conv_a")(x)
    y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_norm")(y)
    y = layers.LeakyReLU(NEGATIVE_SLOPE, name=f"{name}_relu")(y)
    return _conv(channels, 3, f"{name}_conv_b")(y)


def build_again_encoder(mel_bins: int = 80, channels: int = 256, content_channels: int = 4, blocks: int = 6) -> keras.Model:
    """mel (batch, frames, mel_bins) -> [content, mean_1..mean_n, spread_1..spread_n] (before the activation guide)."""
    mel = keras.Input((None, mel_bins), name="mel")
    x = _conv(channels, 1, "encoder_in")(mel)
    means, spreads = [], []
    for block in range(blocks):
        x = layers.Add(name=f"encoder_skip_{block}")([x, _conv_stack(x, channels, f"encoder_block_{block}")])
        x, mean, spread = InstanceStatistics(name=f"encoder_statistics_{block}")(x)
        means.append(mean)
        spreads.append(spread)
    content = _conv(content_channels, 1, "encoder_out")(x)
    return keras.Model(mel, [content, *means, *spreads], name="again_encoder")


def build_again_decoder(mel_bins: int = 80, channels: int = 256, content_channels: int = 4, blocks: int = 6) -> keras.Model:
    """[source content, target content, target means.., target spreads..] -> mel (batch, source frames, mel_bins)."""
    content = keras.Input((None, content_channels), name="content")
    target_content = keras.Input((None, content_channels), name="target_content")
    means = [keras.Input((1, channels), name=f"mean_{block}") for block in range(blocks)]
    spreads = [keras.Input((1, channels), name=f"spread_{block}") for block in range(blocks)]
    _, content_mean, content_spread = InstanceStatistics(name="target_content_statistics")(target_content)
    x = ApplyStatistics(normalise=False, name="content_affine")([content, content_mean, content_spread])
    x = layers.LeakyReLU(NEGATIVE_SLOPE, name="decoder_in_relu")(_conv(channels, 3, "decoder_in")(x))
    for block, (mean, spread) in enumerate(zip(means, spreads)):
        y = _conv_stack(x, channels, f"decoder_block_{block}")
        y = layers.Add(name=f"decoder_refine_{block}")([y, _conv_stack(y, channels, f"decoder_generate_{block}")])
        x = layers.Add(name=f"decoder_skip_{block}")([x, y])
        x = ApplyStatistics(name=f"decoder_adain_{block}")([x, mean, spread])
    x = PrependFrame(name="prime")([x, means[-1]])
    x = layers.GRU(channels, return_sequences=True, name="decoder_gru_0")(x)
    x = layers.GRU(channels, return_sequences=True, name="decoder_gru_1")(x)
    mel = layers.Dense(mel_bins, name="decoder_out")(DropFirstFrame(name="unprime")(x))
    return keras.Model([content, target_content, *means, *spreads], mel, name="again_decoder")


def build_again_vc(mel_bins: int = 80, channels: int = 256, content_channels: int = 4, blocks: int = 6, alpha: float = 0.1) -> keras.Model:
    """[source mel (batch, T, bins), target mel (batch, T', bins)] -> converted mel (batch, T, bins): the source's
    content in the target's voice. The defaults are the paper's; `channels` 128 trains on a CPU in hours."""
    size = {"mel_bins": mel_bins, "channels": channels, "content_channels": content_channels, "blocks": blocks}
    encoder, decoder = build_again_encoder(**size), build_again_decoder(**size)
    source = keras.Input((None, mel_bins), name="source_mel")
    target = keras.Input((None, mel_bins), name="target_mel")
    guide = ActivationGuide(alpha, name="activation_guide")
    source_content, *_ = encoder(source)
    target_content, *statistics = encoder(target)
    converted = decoder([guide(source_content), guide(target_content), *statistics])
    return keras.Model([source, target], converted, name="again_vc")


def load_converter(path) -> keras.Model:
    """A converter saved by `train-again`; any other file is refused with an error naming it."""
    from ..checkpoints import load_keras_file
    from ..errors import CheckpointError

    model = load_keras_file(Path(path))
    if model.name != "again_vc" or len(model.inputs) != 2:
        raise CheckpointError(f"{path}: not an AGAIN-VC converter (train-again makes one)")
    return model
