"""The overlapped-speech detector: waveform -> logit per 10 ms analysis frame that two or more speakers talk at once.

A temporal convolutional network on log filterbank energies, in the spirit of pyannote's segmentation models but
small and feed-forward: the in-graph `Fbank` front end (log energies, normalised over the input, so the level does
not matter), a 1x1 projection, residual blocks of dilated convolutions (dilations 1-32: 1.3 s of context, what a
change of speaker and a second voice under the first need), one logit per frame. Any length in; it trains on
crops of synthetic conversations of training speakers (`data.conversations.OverlapBatches`) under random noise
floors and levels.
"""

from __future__ import annotations

from dataclasses import asdict

import keras

from ..features import FeatureConfig
from ..layers import Fbank

OVERLAP_FEATURES = FeatureConfig(trim="none", energies="log", normalisation="utterance")
OVERLAP_NAME = "overlap_detector"


def build_overlap_detector(
    features: FeatureConfig = OVERLAP_FEATURES, channels: int = 64, dilations=(1, 2, 4, 8, 16, 32), dropout: float = 0.1
) -> keras.Model:
    """waveform (batch, samples) -> overlap logit per frame (batch, frames)."""
    waveform = keras.Input(shape=(None,), name="waveform")
    x = Fbank(**asdict(features), precision="float32", name="fbank")(waveform)
    x = keras.layers.Conv1D(channels, 1, name="project")(x)
    for index, dilation in enumerate(dilations):
        y = keras.layers.Conv1D(channels, 3, dilation_rate=dilation, padding="same", name=f"conv{index}")(x)
        y = keras.layers.BatchNormalization(name=f"bn{index}")(y)
        y = keras.layers.Activation("relu", name=f"relu{index}")(y)
        y = keras.layers.Dropout(dropout, name=f"dropout{index}")(y)
        x = keras.layers.Add(name=f"residual{index}")([x, y])
    logit = keras.layers.Conv1D(1, 1, name="logit")(x)
    return keras.Model(waveform, keras.layers.Reshape((-1,), name="per_frame")(logit), name=OVERLAP_NAME)
