"""Resemblyzer's GE2E front end: a 40-band power mel spectrogram (librosa's Slaney filters, centred hann frames, no log,
no normalisation), the utterance padded to the end of its last 1.6 s partial window."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..audio import FRAME_STEP, SAMPLE_RATE
from .base import FrontEnd
from .spectra import CENTRED_NFFT, HANN, centred_mel_graph, centred_power_mel, cosine_window, dft_basis

# Resemblyzer's partial utterances: 160 frames every round(16000 / 1.3 / 160) = 77 (1.3 a second), the last kept if it covers 75 %
PARTIAL_FRAMES, PARTIAL_STEP, PARTIAL_MIN_COVERAGE = 160, 77, 0.75


def partial_grid_length(num_samples: int) -> int:
    """Samples Resemblyzer pads an utterance to: the end of its last partial window of 160 frames every 77
    (a last window covering under 75 % of its span is dropped, and then nothing is padded)."""
    frames = num_samples // FRAME_STEP + 1
    last = (max(1, frames - PARTIAL_FRAMES + PARTIAL_STEP + 1) - 1) // PARTIAL_STEP * PARTIAL_STEP
    if last > 0 and (num_samples - last * FRAME_STEP) / (PARTIAL_FRAMES * FRAME_STEP) < PARTIAL_MIN_COVERAGE:
        last -= PARTIAL_STEP
    return max(num_samples, (last + PARTIAL_FRAMES) * FRAME_STEP)


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, hz / (200.0 / 3))


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * (200.0 / 3))


@lru_cache(maxsize=4)
def slaney_mel_filterbank(num_filters: int, nfft: int = CENTRED_NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1): librosa's default mel filters (Slaney scale, area-normalised triangles,
    0 Hz to Nyquist), which Resemblyzer uses; tested against `librosa.filters.mel`."""
    edges = _slaney_mel_to_hz(np.linspace(0.0, _slaney_hz_to_mel(sample_rate / 2.0), num_filters + 2))
    ramps = edges[:, None] - np.fft.rfftfreq(nfft, 1.0 / sample_rate)[None, :]
    widths = np.diff(edges)
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def resemblyzer_mel(signal: np.ndarray, num_filters: int = 40) -> np.ndarray:
    """GE2E input as Resemblyzer computes it: padded to its partial grid, centred 25 ms hann frames every 10 ms
    (zero padding), power spectrum, Slaney mel, no log, no normalisation. (frames, num_filters) float32."""
    padding = partial_grid_length(len(signal)) - len(signal)
    return centred_power_mel(signal, HANN, slaney_mel_filterbank(num_filters), padding).astype(np.float32)


class ResemblyzerMel(FrontEnd):
    kind = "resemblyzer"

    def describe(self, config) -> str:
        return f"Resemblyzer's power mel spectrogram ({config.num_fbanks} bands, {config.sample_rate} Hz, padded to its partial windows)"

    def compute(self, signal, config):
        return resemblyzer_mel(signal, config.num_fbanks)

    def constants(self, config, precision):
        return {
            "dft": dft_basis(precision, CENTRED_NFFT, cosine_window(HANN)),
            "mel": slaney_mel_filterbank(config.num_fbanks, CENTRED_NFFT, config.sample_rate).T.astype(precision),
        }

    def graph(self, samples, constants, config, precision):
        """Partial-grid padding (`partial_grid_length` with graph sizes where the length is not static), centred hann
        frames, power, Slaney mel."""
        from keras import ops

        num_samples = ops.shape(samples)[1]
        if isinstance(num_samples, int):  # a static length (JAX, PyTorch, fixed-shape graphs): sizes stay Python ints
            padding = partial_grid_length(num_samples) - num_samples
        else:
            frames = num_samples // FRAME_STEP + 1
            last = (ops.maximum(frames - PARTIAL_FRAMES + PARTIAL_STEP + 1, 1) - 1) // PARTIAL_STEP * PARTIAL_STEP
            coverage = ops.cast(num_samples - last * FRAME_STEP, "float32") / (PARTIAL_FRAMES * FRAME_STEP)
            last = ops.where(ops.logical_and(last > 0, coverage < PARTIAL_MIN_COVERAGE), last - PARTIAL_STEP, last)
            padding = ops.maximum(num_samples, (last + PARTIAL_FRAMES) * FRAME_STEP) - num_samples
        return ops.cast(centred_mel_graph(samples, constants["dft"], constants["mel"], precision, padding), "float32")
