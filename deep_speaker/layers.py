"""Custom Keras 3 layers (keras.ops only, so they run on every Keras backend and survive `.keras` saving)."""

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
class L2Normalize(keras.layers.Layer):
    """x / sqrt(max(sum(x^2), epsilon)) along `axis`, as `K.l2_normalize` in the reference's `ln` layer."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def call(self, inputs):
        squared_norm = ops.sum(ops.square(inputs), axis=self.axis, keepdims=True)
        return inputs * ops.rsqrt(ops.maximum(squared_norm, self.epsilon))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
