"""Training losses by name, each with the classifier (if any) the trainer attaches to the embedding.

- `softmax`: the reference's Dense softmax layer `dense` over the training speakers, cross-entropy;
- `amsoftmax`: additive-margin softmax on cosine logits (`CosineLogits`, also named `dense`);
- `aamsoftmax`: additive angular margin (ArcFace) on the same cosine logits, margin optionally warmed up;
- `triplet`: cosine triplet loss on L2-normalised embeddings, batches laid out [anchors; positives; negatives];
- `batch_hard_triplet`: the same margin, each crop's hardest positive and hardest negative found inside a
  batch of several speakers x several crops (Hermans et al. 2017): mining that costs one batch, at any corpus size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from .layers import CosineLogits, L2Normalize

CLASSIFIER = "dense"  # the reference's name for the softmax layer


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin: float = 0.1):
    """mean(max(cos(a, n) - cos(a, p) + margin, 0)) over a batch laid out [anchors; positives; negatives]."""
    anchor, positive, negative = ops.split(y_pred, 3, axis=0)
    return ops.mean(ops.relu(ops.sum(anchor * negative, -1) - ops.sum(anchor * positive, -1) + margin))


@keras.saving.register_keras_serializable(package="deep_speaker")
class TripletLoss(keras.losses.Loss):
    """`triplet_loss` as a configurable, serialisable Keras loss."""

    def __init__(self, margin: float = 0.1, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return triplet_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def _hardest(y_true, y_pred, margin: float):
    """Per crop: cos(hardest negative) - cos(hardest positive) + margin, within the batch (labels `y_true`)."""
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    similarity = ops.matmul(y_pred, ops.transpose(y_pred))
    same = ops.equal(labels[:, None], labels[None, :])
    positive = ops.logical_and(same, ops.logical_not(ops.eye(ops.shape(labels)[0], dtype="bool")))
    hardest_positive = ops.min(ops.where(positive, similarity, 2.0), axis=1)
    hardest_negative = ops.max(ops.where(same, -2.0, similarity), axis=1)
    return hardest_negative - hardest_positive + margin


@keras.saving.register_keras_serializable(package="deep_speaker")
class BatchHardTripletLoss(keras.losses.Loss):
    """mean over crops of max(cos(a, hardest negative) - cos(a, hardest positive) + margin, 0) in the batch."""

    def __init__(self, margin: float = 0.1, name: str = "batch_hard_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return ops.mean(ops.relu(_hardest(y_true, y_pred, self.margin)))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ActiveBatchHardTriplets(keras.metrics.Mean):
    """Fraction of crops whose hardest triplet in the batch still has a non-zero loss."""

    def __init__(self, margin: float = 0.1, name: str = "active_triplets", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.cast(_hardest(y_true, y_pred, self.margin) > 0, "float32"))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ActiveTriplets(keras.metrics.Mean):
    """Fraction of triplets with a non-zero loss: near 0 means the batches became too easy (or collapse)."""

    def __init__(self, margin: float = 0.1, name: str = "active_triplets", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def update_state(self, y_true, y_pred, sample_weight=None):
        anchor, positive, negative = ops.split(y_pred, 3, axis=0)
        violation = ops.sum(anchor * negative, -1) - ops.sum(anchor * positive, -1) + self.margin
        return super().update_state(ops.cast(violation > 0, "float32"))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="deep_speaker")
class AMSoftmaxLoss(keras.losses.Loss):
    """Additive-margin softmax: cross-entropy of scale * (cos - margin on the true class), from `CosineLogits`."""

    def __init__(self, margin: float = 0.2, scale: float = 30.0, name: str = "am_softmax", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin, self.scale = margin, scale

    def call(self, y_true, y_pred):
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1])
        logits = self.scale * (y_pred - self.margin * one_hot)
        return keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


@keras.saving.register_keras_serializable(package="deep_speaker")
class AAMSoftmaxLoss(keras.losses.Loss):
    """Additive angular margin softmax (ArcFace): cross-entropy of scale * cos(theta + m) on the true class.

    Where theta + m would pass pi, cos(theta) - m sin(m) keeps the logit decreasing in theta (as InsightFace
    and WeSpeaker do). `current_margin` is a variable, so `MarginWarmup` can raise it epoch by epoch.
    """

    def __init__(self, margin: float = 0.2, scale: float = 30.0, name: str = "aam_softmax", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin, self.scale = float(margin), float(scale)
        self.current_margin = keras.Variable(self.margin, trainable=False, name="current_margin")

    def call(self, y_true, y_pred):
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1])
        cosine = ops.clip(y_pred, -1.0 + 1e-7, 1.0 - 1e-7)
        sine = ops.sqrt(1.0 - ops.square(cosine))
        margin = ops.convert_to_tensor(self.current_margin)
        shifted = cosine * ops.cos(margin) - sine * ops.sin(margin)
        shifted = ops.where(cosine > ops.cos(np.pi - margin), shifted, cosine - margin * ops.sin(margin))
        logits = self.scale * ops.where(one_hot > 0, shifted, cosine)
        return keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


class MarginWarmup(keras.callbacks.Callback):
    """Raise a margin loss's margin linearly from 0 (first epoch) to its full value after `epochs` epochs."""

    def __init__(self, loss: AAMSoftmaxLoss, epochs: int):
        super().__init__()
        self.loss, self.epochs = loss, int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.current_margin.assign(self.loss.margin * min(1.0, epoch / self.epochs))


@dataclass(frozen=True)
class LossSpec:
    """How a loss trains: the output layer on the embedding, the Keras loss, its metrics, its batches."""

    output: Callable[[int], keras.layers.Layer]  # num_classes -> layer on the (unnormalised) embedding
    loss: Callable[[object], keras.losses.Loss | str]  # LossRecipe -> loss
    metrics: Callable[[object], list]
    batches: str  # "classification" (utterance, speaker), "triplet" ([anchors; positives; negatives]) or "speakers" (speakers x crops)


def _accuracy(recipe) -> list:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


LOSSES = {
    "softmax": LossSpec(
        lambda classes: layers.Dense(classes, activation="softmax", name=CLASSIFIER),
        lambda recipe: "sparse_categorical_crossentropy",
        _accuracy,
        "classification",
    ),
    "amsoftmax": LossSpec(
        lambda classes: CosineLogits(classes, name=CLASSIFIER),
        lambda recipe: AMSoftmaxLoss(recipe.margin, recipe.scale),
        _accuracy,
        "classification",
    ),
    "aamsoftmax": LossSpec(
        lambda classes: CosineLogits(classes, name=CLASSIFIER),
        lambda recipe: AAMSoftmaxLoss(recipe.margin, recipe.scale),
        _accuracy,
        "classification",
    ),
    "triplet": LossSpec(
        lambda classes: L2Normalize(name="ln"),
        lambda recipe: TripletLoss(recipe.margin),
        lambda recipe: [ActiveTriplets(recipe.margin)],
        "triplet",
    ),
    "batch_hard_triplet": LossSpec(
        lambda classes: L2Normalize(name="ln"),
        lambda recipe: BatchHardTripletLoss(recipe.margin),
        lambda recipe: [ActiveBatchHardTriplets(recipe.margin)],
        "speakers",
    ),
}
