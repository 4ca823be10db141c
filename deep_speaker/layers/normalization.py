"""Length normalisation of embeddings."""

from __future__ import annotations

import keras
from keras import ops


def l2_normalize(x, axis: int = -1, epsilon: float = 1e-12):
    """x / sqrt(max(sum(x^2), epsilon)): `K.l2_normalize`, the reference's `ln`."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


@keras.saving.register_keras_serializable(package="deep_speaker")
class L2Normalize(keras.layers.Layer):
    """`l2_normalize` along `axis` as a layer."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def call(self, inputs):
        return l2_normalize(inputs, self.axis, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
