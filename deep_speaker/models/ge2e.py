"""GE2E speaker encoder (Wan et al. 2018) as Resemblyzer ships it: 40 mel bands, partial windows of 160 frames
every 77, a 3-layer LSTM (256), linear 256 + ReLU, each partial L2-normalised, the partials averaged.

Names follow Resemblyzer's modules (`lstm_0..2`, `linear`), so `importers.resemblyzer` maps its state dict one to one.
"""

from __future__ import annotations

import keras

from ..frontends.resemblyzer import PARTIAL_FRAMES, PARTIAL_STEP
from ..layers import L2Normalize, PartialAverage, PartialWindows
from .registry import register_backbone
from .xvector import scaled


@register_backbone("ge2e")
def build_ge2e(
    num_fbanks: int = 40,
    width: float = 1.0,
    embedding_dim: int = 256,
    dropout: float = 0.0,
    hidden: int = 256,
    layers: int = 3,
    name: str = "backbone",
) -> keras.Model:
    """features (batch, frames, num_fbanks) -> {frames: the partials' last LSTM outputs, embedding: mean of unit partials}."""
    (hidden,) = scaled((hidden,), width)
    features = keras.Input(shape=(None, num_fbanks), name="features")
    x = PartialWindows(PARTIAL_FRAMES, PARTIAL_STEP, name="partials")(features)
    for index in range(layers - 1):
        x = keras.layers.LSTM(hidden, return_sequences=True, name=f"lstm_{index}")(x)
    sequences, last_hidden, _ = keras.layers.LSTM(hidden, return_sequences=True, return_state=True, name=f"lstm_{layers - 1}")(x)
    if dropout:
        last_hidden = keras.layers.Dropout(dropout, name="dropout")(last_hidden)
    partial = keras.layers.Dense(embedding_dim, activation="relu", name="linear")(last_hidden)
    partial = L2Normalize(name="partial_ln")(partial)
    embedding = PartialAverage(name="average")([partial, features])
    frames = PartialAverage(keep_windows=True, name="partial_frames")([sequences, features])
    return keras.Model(features, {"frames": frames, "embedding": embedding}, name=name)
