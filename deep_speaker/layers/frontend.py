"""The front end in the graph: waveform -> filterbank features, exactly as `features.compute_features`.

`Fbank` makes a model waveform-in, so gradients reach the audio (attacks), a whole pipeline exports as
one graph, and augmentation can run before the features. Its config *is* the feature recipe
(`FeatureConfig`), so every saved model says how its input is made. Trimming depends on the data and
stays on the host (`audio.trim_silence`).
"""

from __future__ import annotations

from dataclasses import asdict

import keras
import numpy as np
from keras import ops

from ..audio import FRAME_LENGTH, FRAME_STEP
from ..errors import ConfigError
from ..features import (
    HAMMING,
    HANN,
    NFFT,
    PARTIAL_FRAMES,
    PARTIAL_MIN_COVERAGE,
    PARTIAL_STEP,
    PREEMPHASIS,
    RESEMBLYZER_NFFT,
    SPEECHBRAIN_TOP_DB,
    FeatureConfig,
    cosine_window,
    mel_filterbank,
    partial_grid_length,
    slaney_mel_filterbank,
    speechbrain_mel_filterbank,
)
from .sizes import size_maximum

PRECISIONS = ("float64", "float32")


def _dft_basis(dtype: str, nfft: int = NFFT, window=None) -> np.ndarray:
    """(frame length, 2 * bins): a frame times it gives the real and imaginary parts of its `nfft`-point rfft
    (of the frame times `window`, if given)."""
    angles = 2 * np.pi * np.outer(np.arange(FRAME_LENGTH), np.arange(nfft // 2 + 1)) / nfft
    basis = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1)
    return (basis if window is None else window[:, None] * basis).astype(dtype)


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
        if kind == "resemblyzer":
            self._dft = _dft_basis(precision, RESEMBLYZER_NFFT, cosine_window(HANN))
            self._mel = slaney_mel_filterbank(num_fbanks, RESEMBLYZER_NFFT, sample_rate).T.astype(precision)
        elif kind == "speechbrain":
            self._dft = _dft_basis(precision, RESEMBLYZER_NFFT, cosine_window(HAMMING))
            self._mel = speechbrain_mel_filterbank(num_fbanks, RESEMBLYZER_NFFT, sample_rate).T.astype(precision)
        else:
            self._dft = _dft_basis(precision)
            self._mel = mel_filterbank(num_fbanks, NFFT, sample_rate).T.astype(precision)

    def _centred_mel(self, samples, pad_end=0):
        """`features.centred_power_mel` in the graph (the layer's window and filters)."""
        half = RESEMBLYZER_NFFT // 2
        padded = ops.pad(ops.cast(samples, self.precision), [[0, 0], [half, pad_end + half]])
        length = ops.shape(samples)[1] + pad_end
        starts = ops.expand_dims(ops.arange(length // FRAME_STEP + 1) * FRAME_STEP, 1)
        spectrum = ops.matmul(ops.take(padded, starts + ops.arange(RESEMBLYZER_NFFT)[None, :], axis=1), ops.convert_to_tensor(self._dft))
        bins = RESEMBLYZER_NFFT // 2 + 1
        return ops.matmul(spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2, ops.convert_to_tensor(self._mel))

    def _speechbrain(self, samples):
        """`features.speechbrain_fbank` in the graph: dB with an 80 dB floor below each row's maximum, mean removed."""
        decibels = 10 * ops.log10(ops.maximum(self._centred_mel(samples), 1e-10))
        decibels = ops.maximum(decibels, ops.max(decibels, axis=(1, 2), keepdims=True) - SPEECHBRAIN_TOP_DB)
        return ops.cast(decibels - ops.mean(decibels, axis=1, keepdims=True), "float32")

    def _resemblyzer(self, samples):
        """`features.resemblyzer_mel` in the graph: partial-grid padding, centred hann frames, power, Slaney mel."""
        num_samples = ops.shape(samples)[1]
        if isinstance(num_samples, int):  # a static length (JAX, PyTorch, fixed-shape graphs): sizes stay Python ints
            return ops.cast(self._centred_mel(samples, partial_grid_length(num_samples) - num_samples), "float32")
        frames = num_samples // FRAME_STEP + 1
        last = (ops.maximum(frames - PARTIAL_FRAMES + PARTIAL_STEP + 1, 1) - 1) // PARTIAL_STEP * PARTIAL_STEP
        coverage = ops.cast(num_samples - last * FRAME_STEP, "float32") / (PARTIAL_FRAMES * FRAME_STEP)
        last = ops.where(ops.logical_and(last > 0, coverage < PARTIAL_MIN_COVERAGE), last - PARTIAL_STEP, last)
        length = ops.maximum(num_samples, (last + PARTIAL_FRAMES) * FRAME_STEP)
        return ops.cast(self._centred_mel(samples, length - num_samples), "float32")

    def call(self, waveform):
        samples = ops.cast(waveform, "float32")
        if self.feature_config.kind == "resemblyzer":
            return self._resemblyzer(samples)
        if self.feature_config.kind == "speechbrain":
            return self._speechbrain(samples)
        emphasised = ops.concatenate([samples[:, :1], samples[:, 1:] - PREEMPHASIS * samples[:, :-1]], axis=1)
        emphasised = ops.pad(ops.cast(emphasised, self.precision), [[0, 0], [0, FRAME_LENGTH]])
        num_samples = ops.shape(samples)[1]
        num_frames = 1 + (size_maximum(num_samples - FRAME_LENGTH, 0) + FRAME_STEP - 1) // FRAME_STEP
        starts = ops.expand_dims(ops.arange(num_frames) * FRAME_STEP, 1)
        frames = ops.take(emphasised, starts + ops.arange(FRAME_LENGTH)[None, :], axis=1)
        spectrum = ops.matmul(frames, ops.convert_to_tensor(self._dft))
        real, imaginary = spectrum[..., : NFFT // 2 + 1], spectrum[..., NFFT // 2 + 1 :]
        energies = ops.matmul((real * real + imaginary * imaginary) / NFFT, ops.convert_to_tensor(self._mel))
        energies = ops.where(ops.equal(energies, 0), float(np.finfo(float).eps), energies)  # a Python float: stays in `precision`
        if self.feature_config.energies == "log":
            energies = ops.log(energies)
        axes = (1, 2) if self.feature_config.normalisation == "utterance" else (2,)
        count = ops.cast(ops.prod(ops.take(ops.shape(energies), axes)), self.precision)
        # mean and std as sums: ONNX Runtime has no float64 kernel for the pooling tf2onnx makes of a mean
        mean = ops.sum(energies, axis=axes, keepdims=True) / count
        std = ops.sqrt(ops.sum(ops.square(energies - mean), axis=axes, keepdims=True) / count)
        return ops.cast((energies - mean) / ops.maximum(std, 1e-12), "float32")

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        if self.feature_config.kind != "deep_speaker":
            return (input_shape[0], None, self.feature_config.num_fbanks)
        frames = (
            None
            if samples is None
            else 1 + max(samples - FRAME_LENGTH, 0) // FRAME_STEP + (max(samples - FRAME_LENGTH, 0) % FRAME_STEP > 0)
        )
        return (input_shape[0], frames, self.feature_config.num_fbanks)

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
