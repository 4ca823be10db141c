"""Classifiers for margin losses: cosine logits, from which AM-softmax (and later AAM) are computed."""

from __future__ import annotations

import keras
from keras import ops

from .normalization import l2_normalize


@keras.saving.register_keras_serializable(package="deep_speaker")
class CosineLogits(keras.layers.Layer):
    """Cosine of an embedding with each class's learned direction: (batch, dim) -> (batch, num_classes)."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape):
        self.directions = self.add_weight(name="directions", shape=(input_shape[-1], self.num_classes), initializer="glorot_uniform")

    def call(self, inputs):
        return ops.matmul(l2_normalize(inputs), l2_normalize(self.directions, axis=0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
