"""Fusion of unit embeddings into one unit vector: a base and its refinement head, or the members of an ensemble."""

from __future__ import annotations

import keras
from keras import ops

from ..errors import ConfigError


def weighted_concatenation(vectors, weights):
    """[sqrt(w_1) v_1, ..., sqrt(w_n) v_n]: for unit vectors and weights summing to 1, a unit vector whose cosine with
    another such vector is the weighted sum of the parts' cosines."""
    return ops.concatenate([vector * weight**0.5 for vector, weight in zip(vectors, weights)], axis=-1)


@keras.saving.register_keras_serializable(package="deep_speaker")
class EmbeddingFusion(keras.layers.Layer):
    """One unit vector from the base and head embeddings (both L2-normalised).

    mode 'head': the head embedding alone; 'concat': [base, head] / sqrt(2); 'score':
    [sqrt(w) base, sqrt(1 - w) head], whose cosine is exactly w cos(base) + (1 - w) cos(head), i.e.
    score-level fusion with weight w that still scores with one dot product.

    `trained` and `base_fingerprint` record that the head was trained, and on which base weights, so a
    model with a never-trained or mismatched head is refused at load time (see `model_files.load_model`).
    """

    MODES = ("head", "concat", "score")

    def __init__(self, mode: str = "head", weight: float = 0.5, trained: bool = False, base_fingerprint: str = "", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ConfigError(f"unknown fusion {mode!r}; choose from {self.MODES}")
        self.mode, self.weight, self.trained, self.base_fingerprint = mode, float(weight), bool(trained), base_fingerprint

    def call(self, inputs):
        base, head = inputs
        if self.mode == "head":
            return head
        weight = 0.5 if self.mode == "concat" else self.weight
        return weighted_concatenation([base, head], [weight, 1.0 - weight])

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


@keras.saving.register_keras_serializable(package="deep_speaker")
class ScoreFusion(keras.layers.Layer):
    """[sqrt(w_1) e_1, ..., sqrt(w_n) e_n] for unit vectors e_i and weights summing to 1: its cosine with another
    such vector is exactly sum_i w_i cos(e_i, e'_i), i.e. weighted score-level fusion in one dot product."""

    def __init__(self, weights=(0.5, 0.5), **kwargs):
        super().__init__(**kwargs)
        weights = [float(w) for w in weights]
        if len(weights) < 2 or not all(w > 0 for w in weights):
            raise ConfigError(f"score fusion takes two or more positive weights, got {weights}")
        self.fusion_weights = [w / sum(weights) for w in weights]

    def call(self, inputs):
        if len(inputs) != len(self.fusion_weights):
            raise ConfigError(f"score fusion has {len(self.fusion_weights)} weights but got {len(inputs)} embeddings")
        return weighted_concatenation(inputs, self.fusion_weights)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], sum(shape[-1] for shape in input_shape))

    def get_config(self):
        return {**super().get_config(), "weights": self.fusion_weights}
