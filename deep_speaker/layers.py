"""Custom Keras 3 layers (keras.ops only, so they run on every Keras backend and survive `.keras` saving)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deep_speaker")
class FeatureSpec(keras.layers.Layer):
    """Identity on the model input that records how that input is computed (a `FeatureConfig` as a dict).

    Carried inside the model, the recipe travels with every `.keras` file, so an encoder always feeds a
    model the features it was trained on. Weightless: legacy checkpoints load by name as before.
    """

    def __init__(self, features: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.features = dict(features or {})

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "features": self.features}


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
class CosineLogits(keras.layers.Layer):
    """Cosine of an embedding with each class's learned direction: the AM-softmax classifier."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape):
        self.directions = self.add_weight(name="directions", shape=(input_shape[-1], self.num_classes), initializer="glorot_uniform")

    def call(self, inputs):
        unit_inputs = inputs * ops.rsqrt(ops.maximum(ops.sum(ops.square(inputs), -1, keepdims=True), 1e-12))
        unit_directions = self.directions * ops.rsqrt(ops.maximum(ops.sum(ops.square(self.directions), 0, keepdims=True), 1e-12))
        return ops.matmul(unit_inputs, unit_directions)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="deep_speaker")
class EmbeddingFusion(keras.layers.Layer):
    """One unit vector from the base and head embeddings (both L2-normalised).

    mode 'head': the head embedding alone; 'concat': [base, head] / sqrt(2); 'score':
    [sqrt(w) base, sqrt(1 - w) head], whose cosine is exactly w cos(base) + (1 - w) cos(head), i.e.
    score-level fusion with weight w that still scores with one dot product.

    `trained` and `base_fingerprint` record that the head was trained, and on which base weights, so a
    model with a never-trained or mismatched head is refused at load time (see checkpoints.load_model).
    """

    MODES = ("head", "concat", "score")

    def __init__(self, mode: str = "head", weight: float = 0.5, trained: bool = False, base_fingerprint: str = "", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"unknown fusion {mode!r}; choose from {self.MODES}")
        self.mode, self.weight, self.trained, self.base_fingerprint = mode, float(weight), bool(trained), base_fingerprint

    def call(self, inputs):
        base, head = inputs
        if self.mode == "head":
            return head
        weight = 0.5 if self.mode == "concat" else self.weight
        return ops.concatenate([base * weight**0.5, head * (1.0 - weight) ** 0.5], axis=-1)

    def compute_output_shape(self, input_shape):
        base, head = input_shape
        return head if self.mode == "head" else (base[0], base[-1] + head[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "weight": self.weight,
            "trained": self.trained,
            "base_fingerprint": self.base_fingerprint,
        }
