"""SpeechBrain's `Fbank` with sentence mean normalisation: centred 25 ms hamming frames, its HTK-scale filters, dB with
an 80 dB floor below the utterance's maximum, each band's mean removed."""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from .base import FrontEnd
from .spectra import CENTRED_NFFT, HAMMING, centred_mel_graph, centred_power_mel, cosine_window, dft_basis, hz_to_mel, mel_to_hz

SPEECHBRAIN_TOP_DB = 80.0  # SpeechBrain's Fbank clamps each utterance to 80 dB below its loudest band


def speechbrain_mel_filterbank(num_filters: int, nfft: int = CENTRED_NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1): SpeechBrain's triangular filters (HTK mel scale, 0 Hz to Nyquist); as in its
    `Filterbank`, each triangle's both slopes take the width of its left band."""
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), num_filters + 2))
    slope = (np.linspace(0, sample_rate // 2, nfft // 2 + 1)[None, :] - edges[1:-1, None]) / np.diff(edges)[:-1, None]
    return np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope))


def speechbrain_fbank(signal: np.ndarray, num_filters: int = 80) -> np.ndarray:
    """SpeechBrain's `Fbank` then sentence mean normalisation: centred 25 ms hamming frames every 10 ms (zero
    padding), power spectrum, its filters, 10 log10 (floor 1e-10, then 80 dB below the utterance's maximum),
    each band's mean over the utterance subtracted. (frames, num_filters) float32."""
    decibels = 10 * np.log10(np.maximum(centred_power_mel(signal, HAMMING, speechbrain_mel_filterbank(num_filters)), 1e-10))
    decibels = np.maximum(decibels, decibels.max() - SPEECHBRAIN_TOP_DB)
    return (decibels - decibels.mean(axis=0)).astype(np.float32)


class SpeechBrainFbank(FrontEnd):
    kind = "speechbrain"

    def describe(self, config) -> str:
        return f"SpeechBrain's Fbank ({config.num_fbanks} bands, {config.sample_rate} Hz, log, sentence mean normalisation)"

    def compute(self, signal, config):
        return speechbrain_fbank(signal, config.num_fbanks)

    def constants(self, config, precision):
        return {
            "dft": dft_basis(precision, CENTRED_NFFT, cosine_window(HAMMING)),
            "mel": speechbrain_mel_filterbank(config.num_fbanks, CENTRED_NFFT, config.sample_rate).T.astype(precision),
        }

    def graph(self, samples, constants, config, precision):
        """dB with an 80 dB floor below each row's maximum, mean removed."""
        from keras import ops

        decibels = 10 * ops.log10(ops.maximum(centred_mel_graph(samples, constants["dft"], constants["mel"], precision), 1e-10))
        decibels = ops.maximum(decibels, ops.max(decibels, axis=(1, 2), keepdims=True) - SPEECHBRAIN_TOP_DB)
        return ops.cast(decibels - ops.mean(decibels, axis=1, keepdims=True), "float32")
