"""The spoof detector: waveform -> logit that the recording is attacked or converted, not genuine speech.

A light CNN on log filterbank energies, in the spirit of the light CNNs of the ASVspoof challenges: the same
in-graph `Fbank` front end as the speaker models (log energies, utterance normalisation, which keeps the quiet
bands where adversarial perturbations and vocoder artefacts live), four convolution blocks with max-feature-map
activations (the maximum of two halves of the channels, which LCNNs use to keep the competing evidence), global
pooling over time and frequency, one logit. Any length in, so a whole recording is judged at once.
"""

from __future__ import annotations

from dataclasses import asdict

import keras
from keras import ops

from ..features import FeatureConfig
from ..layers import Fbank

DETECTOR_FEATURES = FeatureConfig(trim="reference", energies="log", normalisation="utterance")
DETECTOR_NAME = "spoof_detector"


@keras.saving.register_keras_serializable(package="deep_speaker")
class MaxFeatureMap(keras.layers.Layer):
    """Max-feature-map (Wu et al., light CNN): the channel-wise maximum of the two halves of the channels."""

    def call(self, inputs):
        first, second = ops.split(inputs, 2, axis=-1)
        return ops.maximum(first, second)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


def build_detector(features: FeatureConfig = DETECTOR_FEATURES, width: int = 16, dropout: float = 0.3) -> keras.Model:
    """waveform (batch, samples) -> spoof logit (batch, 1)."""
    waveform = keras.Input(shape=(None,), name="waveform")
    x = Fbank(**asdict(features), name="fbank")(waveform)
    x = keras.layers.Reshape((-1, features.num_fbanks, 1), name="image")(x)
    for index, channels in enumerate((width, 2 * width, 3 * width, 4 * width)):
        x = keras.layers.Conv2D(2 * channels, 3, padding="same", name=f"conv{index}")(x)
        x = MaxFeatureMap(name=f"mfm{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="average")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(waveform, logit, name=DETECTOR_NAME)
