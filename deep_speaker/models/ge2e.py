"""GE2E speaker encoder (Wan et al. 2018) as Resemblyzer ships it: 40 mel bands, partial windows of 160 frames
every 77, a 3-layer LSTM (256), linear 256 + ReLU, each partial L2-normalised, the partials averaged.

Names follow Resemblyzer's modules (`lstm_0..2`, `linear`) so `ge2e_weights` maps its state dict one to one.
"""

from __future__ import annotations

import keras
import numpy as np

from ..errors import CheckpointError
from ..layers import L2Normalize, PartialAverage, PartialWindows
from .registry import register_backbone
from .xvector import scaled

PARTIAL_FRAMES = 160
PARTIAL_STEP = 77  # round(16000 / 1.3 / 160): Resemblyzer's default rate of 1.3 partials per second


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


def ge2e_weights(backbone: keras.Model, state: dict, source) -> None:
    """Set a `ge2e` backbone's weights from Resemblyzer's `model_state` (PyTorch LSTM gates i, f, g, o are
    Keras's i, f, c, o; PyTorch's two biases add up)."""
    try:
        for index in range(sum(1 for layer in backbone.layers if layer.name.startswith("lstm_"))):
            suffix = f"_l{index}"
            kernel, recurrent = state[f"lstm.weight_ih{suffix}"].T, state[f"lstm.weight_hh{suffix}"].T
            bias = state[f"lstm.bias_ih{suffix}"] + state[f"lstm.bias_hh{suffix}"]
            _assign(backbone.get_layer(f"lstm_{index}"), [kernel, recurrent, bias], source)
        _assign(backbone.get_layer("linear"), [state["linear.weight"].T, state["linear.bias"]], source)
    except KeyError as error:
        raise CheckpointError(f"{source}: not a GE2E (Resemblyzer) state dict: no tensor {error}") from None


def _assign(layer: keras.layers.Layer, values: list[np.ndarray], source) -> None:
    expected = [tuple(w.shape) for w in layer.weights]
    found = [tuple(v.shape) for v in values]
    if expected != found:
        raise CheckpointError(f"{source}: layer {layer.name} needs weights of shapes {expected}, the checkpoint has {found}")
    layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
