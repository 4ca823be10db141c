"""Resemblyzer's GE2E encoder as a speaker model of this toolkit: its front end in `Fbank` (kind "resemblyzer"),
its preprocessing as the trim method "resemblyzer" (volume normalisation, WebRTC VAD), its network as the
registered `ge2e` backbone with the checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import keras

from ..features import FeatureConfig
from ..models import build_backbone, build_speaker_model
from ..models.ge2e import ge2e_weights
from .torch_checkpoint import read_torch_checkpoint

RESEMBLYZER_FEATURES = FeatureConfig(num_fbanks=40, trim="resemblyzer", kind="resemblyzer")


def import_resemblyzer(path) -> keras.Model:
    """A waveform-in speaker model from Resemblyzer's `pretrained.pt` (its `model_state`, or that dict saved alone)."""
    state = read_torch_checkpoint(path)
    state = state.get("model_state", state) if isinstance(state, dict) else state
    backbone = build_backbone("ge2e", RESEMBLYZER_FEATURES.num_fbanks)
    ge2e_weights(backbone, state if isinstance(state, dict) else {}, Path(path))
    return build_speaker_model(backbone, RESEMBLYZER_FEATURES, name="ge2e_resemblyzer")
