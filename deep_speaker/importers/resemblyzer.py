"""Resemblyzer's GE2E encoder as a speaker model of this toolkit: its front end in `Fbank` (kind "resemblyzer"),
its preprocessing as the trim method "resemblyzer" (volume normalisation, WebRTC VAD), its network as the
registered `ge2e` backbone with the checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import keras

from ..checkpoints import assign_weights_by_name
from ..errors import CheckpointError
from ..features import FeatureConfig
from ..models import build_backbone, build_speaker_model
from .torch_checkpoint import read_state_dict

RESEMBLYZER_FEATURES = FeatureConfig(num_fbanks=40, trim="resemblyzer", kind="resemblyzer")


def ge2e_weights(backbone: keras.Model, state: dict, source) -> None:
    """Set a `ge2e` backbone's weights from Resemblyzer's `model_state` (PyTorch LSTM gates i, f, g, o are
    Keras's i, f, c, o; PyTorch's two biases add up); shapes are checked by `assign_weights_by_name`."""
    layers = sum(1 for layer in backbone.layers if layer.name.startswith("lstm_"))
    try:
        weights = {
            f"lstm_{i}": [
                state[f"lstm.weight_ih_l{i}"].T,
                state[f"lstm.weight_hh_l{i}"].T,
                state[f"lstm.bias_ih_l{i}"] + state[f"lstm.bias_hh_l{i}"],
            ]
            for i in range(layers)
        }
        weights["linear"] = [state["linear.weight"].T, state["linear.bias"]]
    except KeyError as error:
        raise CheckpointError(f"{source}: not a GE2E (Resemblyzer) state dict: no tensor {error}") from None
    assign_weights_by_name(backbone, weights, source)


def import_resemblyzer(path) -> keras.Model:
    """A waveform-in speaker model from Resemblyzer's `pretrained.pt` (its `model_state`, or that dict saved alone)."""
    state = read_state_dict(path, key="model_state")
    backbone = build_backbone("ge2e", RESEMBLYZER_FEATURES.num_fbanks)
    ge2e_weights(backbone, state, Path(path))
    return build_speaker_model(backbone, RESEMBLYZER_FEATURES, name="ge2e_resemblyzer")
