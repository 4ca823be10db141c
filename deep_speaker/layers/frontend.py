"""The front end in the graph: waveform -> filterbank features, exactly as `features.compute_features`.

`Fbank` makes a model waveform-in, so gradients reach the audio (attacks), a whole pipeline exports as
one graph, and augmentation can run before the features. Its config *is* the feature recipe
(`FeatureConfig`), so every saved model says how its input is made. Trimming depends on the data and
stays on the host (`audio.trim_silence`).
"""

from __future__ import annotations

from dataclasses import asdict

import keras
from keras import ops

from ..errors import ConfigError
from ..features import FeatureConfig
from ..frontends import front_end

PRECISIONS = ("float64", "float32")


@keras.saving.register_keras_serializable(package="deep_speaker")
class Fbank(keras.layers.Layer):
    """Waveform (batch, samples) at `sample_rate` -> normalised filterbank features (batch, frames, num_fbanks).

    Each row is one whole (trimmed) utterance: utterance normalisation uses every sample of the row.
    Pre-emphasis runs in float32 as the reference's NumPy code does; the spectrum, filterbank and
    normalisation in `precision`. float64 (default) matches `compute_features` to about 1e-6 for every
    recipe. float32 is for runtimes without float64 (TFLite, some accelerators): linear energies still
    match within 3e-5, but log energies of nearly empty bands differ by up to about 5e-3, because there the
    reference's own float32 pre-emphasis rounding is the signal. The DFT is a matrix product, which every
    backend and export format supports. On the JAX backend float64 needs `jax_enable_x64`.

    >>> import numpy as np
    >>> layer = Fbank(energies="log", normalisation="utterance")
    >>> tuple(layer(np.random.default_rng(0).standard_normal((2, 16000)).astype("float32")).shape)
    (2, 99, 64)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_fbanks: int = 64,
        trim: str = "reference",
        energies: str = "linear",
        normalisation: str = "frame",
        precision: str = "float64",
        kind: str = "deep_speaker",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_config = FeatureConfig(sample_rate, num_fbanks, trim, energies, normalisation, kind)
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown front-end precision {precision!r}; choose from {PRECISIONS}")
        self.precision = precision
        self._front_end = front_end(kind)
        self._constants = self._front_end.constants(self.feature_config, precision)

    def call(self, waveform):
        return self._front_end.graph(ops.cast(waveform, "float32"), self._constants, self.feature_config, self.precision)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._front_end.num_frames(input_shape[1]), self.feature_config.num_fbanks)

    def get_config(self):
        return {**super().get_config(), **asdict(self.feature_config), "precision": self.precision}


@keras.saving.register_keras_serializable(package="deep_speaker")
class FeatureSpec(keras.layers.Layer):
    """Legacy (version 0.1): identity on a feature-in model's input that recorded its `FeatureConfig`.

    Kept so `.keras` files written before `Fbank` still load; `model_files.load_model` rebuilds them as
    waveform-in models with an `Fbank` of the recorded recipe. New models never contain it.
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
