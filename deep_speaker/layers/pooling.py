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
