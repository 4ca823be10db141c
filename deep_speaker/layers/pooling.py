"""Pooling over time: frame-level (batch, frames, channels) -> utterance-level (batch, dim)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deep_speaker")
class TemporalAverage(keras.layers.Layer):
    """Mean over the time axis: (batch, frames, channels) -> (batch, channels). The reference's `average`."""

    def call(self, inputs):
        return ops.mean(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="deep_speaker")
class StatsPooling(keras.layers.Layer):
    """Mean and standard deviation over time: (batch, frames, channels) -> (batch, 2 * channels)."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        return ops.concatenate([ops.mean(inputs, axis=1), ops.sqrt(ops.var(inputs, axis=1) + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="deep_speaker")
class AttentiveStatsPooling(keras.layers.Layer):
    """Attentive statistics pooling (ECAPA-TDNN): (batch, frames, channels) -> (batch, 2 * channels).

    Per channel, a softmax over time of `score(tanh(norm(relu(attention([x, mean, std])))))` weights the
    mean and standard deviation; with `global_context`, the utterance's own mean and deviation are fed
    to the attention beside each frame. Sub-layer names follow SpeechBrain's (`tdnn`, `norm`, `conv`).
    """

    def __init__(self, attention_channels: int = 128, global_context: bool = True, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.attention_channels, self.global_context, self.epsilon = int(attention_channels), bool(global_context), float(epsilon)
        self.tdnn = keras.layers.Dense(self.attention_channels, name="tdnn", dtype=self.dtype_policy)
        self.norm = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.conv = keras.layers.Dense(channels, name="conv", dtype=self.dtype_policy)
        self.tdnn.build((*input_shape[:-1], 3 * channels if self.global_context else channels))
        self.norm.build((*input_shape[:-1], self.attention_channels))
        self.conv.build((*input_shape[:-1], self.attention_channels))

    def _statistics(self, x, weights):
        mean = ops.sum(weights * x, axis=1, keepdims=True)
        std = ops.sqrt(ops.maximum(ops.sum(weights * ops.square(x - mean), axis=1, keepdims=True), self.epsilon))
        return mean, std

    def call(self, x, training=None):
        attention_input = x
        if self.global_context:
            uniform = ops.ones_like(x[:, :, :1]) / ops.cast(ops.shape(x)[1], x.dtype)
            mean, std = self._statistics(x, uniform)
            frames = ops.shape(x)[1]
            attention_input = ops.concatenate([x, ops.repeat(mean, frames, axis=1), ops.repeat(std, frames, axis=1)], axis=-1)
        hidden = ops.tanh(self.norm(ops.relu(self.tdnn(attention_input)), training=training))
        weights = ops.softmax(self.conv(hidden), axis=1)
        mean, std = self._statistics(x, weights)
        return ops.concatenate([mean[:, 0], std[:, 0]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "attention_channels": self.attention_channels,
            "global_context": self.global_context,
            "epsilon": self.epsilon,
        }
