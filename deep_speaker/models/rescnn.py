"""ResCNN, the Deep Speaker backbone, with the reference's layer names so legacy weights load by name."""

from __future__ import annotations

from dataclasses import asdict

import keras
from keras import layers, regularizers

from ..features import FeatureConfig
from ..layers import CosineLogits, FeatureSpec, L2Normalize, TemporalAverage

CLIP_VALUE = 20.0
L2_WEIGHT = 1e-4
STAGE_FILTERS = (64, 128, 256, 512)
CLASSIFIERS = ("softmax", "cosine")
FREQUENCY_REDUCTION = 16  # four stride-2 stages: 64 filterbanks -> 4 bins
FEATURE_SPEC_LAYER = "features"


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizers.l2(L2_WEIGHT),
        name=name,
    )


def _clipped_relu(name: str) -> layers.ReLU:
    """min(max(x, 0), 20): the reference's clipped ReLU, as a built-in layer."""
    return layers.ReLU(max_value=CLIP_VALUE, name=name)


def _identity_block(x, filters: int, stage: int, block: int):
    base = f"res{stage}_{block}_branch"
    shortcut = x
    x = _conv(filters, 3, 1, f"{base}_2a")(x)
    x = layers.BatchNormalization(name=f"{base}_2a_bn")(x)
    x = _clipped_relu(f"{base}_2a_relu")(x)
    x = _conv(filters, 3, 1, f"{base}_2b")(x)
    x = layers.BatchNormalization(name=f"{base}_2b_bn")(x)
    x = _clipped_relu(f"{base}_2b_relu")(x)
    x = layers.Add(name=f"{base}_add")([x, shortcut])
    return _clipped_relu(f"{base}_out_relu")(x)


def _conv_and_res_block(x, filters: int, stage: int):
    name = f"conv{filters}-s"
    x = _conv(filters, 5, 2, name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = _clipped_relu(f"{name}_relu")(x)
    for block in range(3):
        x = _identity_block(x, filters, stage, block)
    return x


def stage_filters(width: float) -> tuple[int, ...]:
    """Filters of the four stages for a width multiplier (1.0 = the published 64/128/256/512)."""
    filters = tuple(max(1, int(round(f * width))) for f in STAGE_FILTERS)
    return filters


def build_rescnn(
    width: float = 1.0,
    embedding_dim: int = 512,
    num_frames: int | None = None,
    features: FeatureConfig = FeatureConfig(),
    num_speakers: int | None = None,
    dropout: float = 0.5,
    classifier: str = "softmax",
    name: str = "ResCNN",
) -> keras.Model:
    """Deep Speaker ResCNN.

    With `num_speakers=None` the embedding model: (batch, frames, 64, 1) -> L2-normalised (batch, 512).
    With `num_speakers=N` the softmax pre-training model: dropout before `affine`, then a softmax
    layer `dense` over N speakers and no normalisation, as the reference; with `classifier="cosine"`,
    `dense` gives the cosine to each speaker's direction instead, for the AM-softmax loss.
    `width` scales every stage's filters (0.25 gives a CPU-friendly 16/32/64/128 variant).
    `features` is recorded in the model (layer `features`) so encoders compute the input it expects.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose from {CLASSIFIERS}")
    num_fbanks = features.num_fbanks
    inputs = keras.Input(shape=(num_frames, num_fbanks, 1), name="input")
    x = FeatureSpec(asdict(features), name=FEATURE_SPEC_LAYER)(inputs)
    for stage, filters in enumerate(stage_filters(width), start=1):
        x = _conv_and_res_block(x, filters, stage)
    x = layers.Reshape((-1, (num_fbanks // FREQUENCY_REDUCTION) * x.shape[-1]), name="reshape")(x)
    x = TemporalAverage(name="average")(x)
    if num_speakers is not None:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(embedding_dim, name="affine")(x)
    if num_speakers is not None and classifier == "cosine":
        outputs = CosineLogits(num_speakers, name="dense")(x)
    elif num_speakers is not None:
        outputs = layers.Dense(num_speakers, activation="softmax", name="dense")(x)
    else:
        outputs = L2Normalize(name="ln")(x)
    return keras.Model(inputs, outputs, name=name)


def embedding_model_from(model: keras.Model) -> keras.Model:
    """The embedding model (up to `ln`) sharing weights with a softmax pre-training model."""
    affine = model.get_layer("affine").output
    return keras.Model(model.input, L2Normalize(name="ln")(affine), name=model.name)


def feature_config_of(model: keras.Model) -> FeatureConfig:
    """The features a model expects: its `features` layer, or the reference's for models without one."""
    try:
        spec = model.get_layer(FEATURE_SPEC_LAYER)
    except ValueError:
        return FeatureConfig()
    return FeatureConfig.from_dict(spec.features)
