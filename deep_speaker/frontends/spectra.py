"""What the front ends share: mel scales and filters, windows, blocked power spectra (NumPy), and the same in the
graph (`keras.ops`, imported only when a graph is built, so the NumPy side loads without Keras)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..audio import FRAME_LENGTH, FRAME_STEP, SAMPLE_RATE

NFFT = 512  # the reference's (python_speech_features) FFT size
CENTRED_NFFT = 400  # librosa's and torch's centred STFT of 25 ms frames (Resemblyzer, SpeechBrain)
HANN, HAMMING = 0.5, 0.54


def hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


@lru_cache(maxsize=8)
def mel_filterbank(num_filters: int = 64, nfft: int = NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular mel filters (num_filters, nfft // 2 + 1), built exactly as python_speech_features does."""
    mel_points = np.linspace(hz_to_mel(0), hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * mel_to_hz(mel_points) / sample_rate)
    fft_bins = np.arange(nfft // 2 + 1)
    lower, centre, upper = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((fft_bins >= lower) & (fft_bins < centre), (fft_bins - lower) / (centre - lower), 0.0)
        falling = np.where((fft_bins >= centre) & (fft_bins < upper), (upper - fft_bins) / (upper - centre), 0.0)
    filters = rising + falling
    filters.setflags(write=False)
    return filters


def blocked_mel_power(frames: np.ndarray, filters: np.ndarray, nfft: int, prepare=None, block_frames: int = 4096) -> np.ndarray:
    """Power spectra / nfft of `frames` (each block passed through `prepare` first, if given) summed by `filters`
    (bands, bins): (frames, bands) float64, `block_frames` frames at a time so memory stays bounded."""
    energies = np.empty((frames.shape[0], filters.shape[0]))
    for start in range(0, frames.shape[0], block_frames):
        block = frames[start : start + block_frames]
        spectrum = np.fft.rfft(block if prepare is None else prepare(block), nfft)
        energies[start : start + block_frames] = ((spectrum.real**2 + spectrum.imag**2) / nfft) @ filters.T
    return energies


def cosine_window(alpha: float, length: int = CENTRED_NFFT) -> np.ndarray:
    """Periodic generalised cosine window alpha - (1 - alpha) cos(2 pi n / length): hann 0.5, hamming 0.54 (torch's and
    librosa's STFT windows)."""
    return alpha - (1 - alpha) * np.cos(2 * np.pi * np.arange(length) / length)


def centred_power_mel(signal: np.ndarray, window_alpha: float, filters: np.ndarray, pad_end: int = 0) -> np.ndarray:
    """Mel energies (frames, filters) float64 of centred 25 ms frames every 10 ms (zero padding, `pad_end` more zeros
    at the end) under a periodic cosine window: the STFT that librosa and torch compute with `center=True`."""
    signal = np.pad(np.asarray(signal, dtype=np.float64), (CENTRED_NFFT // 2, pad_end + CENTRED_NFFT // 2))
    frames = np.lib.stride_tricks.sliding_window_view(signal, CENTRED_NFFT)[::FRAME_STEP]
    spectrum = np.fft.rfft(frames * cosine_window(window_alpha), CENTRED_NFFT)
    return (spectrum.real**2 + spectrum.imag**2) @ filters.T


def dft_basis(dtype: str, nfft: int = NFFT, window=None) -> np.ndarray:
    """(frame length, 2 * bins): a frame times it gives the real and imaginary parts of its `nfft`-point rfft
    (of the frame times `window`, if given)."""
    angles = 2 * np.pi * np.outer(np.arange(FRAME_LENGTH), np.arange(nfft // 2 + 1)) / nfft
    basis = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1)
    return (basis if window is None else window[:, None] * basis).astype(dtype)


def size_maximum(size, floor: int):
    """max(size, floor) for a size taken from `ops.shape`: a Python int where the shape is static (JAX and PyTorch
    trace with concrete shapes, and under jax.jit a tensor here would be a tracer that `pad` and `arange` refuse),
    else a tensor (TensorFlow graphs with an unknown length)."""
    from keras import ops

    return max(size, floor) if isinstance(size, int) else ops.maximum(size, floor)


def centred_mel_graph(samples, dft, mel, precision: str, pad_end=0):
    """`centred_power_mel` in the graph: `dft` the windowed basis (`dft_basis`), `mel` the filters transposed."""
    from keras import ops

    half = CENTRED_NFFT // 2
    padded = ops.pad(ops.cast(samples, precision), [[0, 0], [half, pad_end + half]])
    length = ops.shape(samples)[1] + pad_end
    starts = ops.expand_dims(ops.arange(length // FRAME_STEP + 1) * FRAME_STEP, 1)
    spectrum = ops.matmul(ops.take(padded, starts + ops.arange(CENTRED_NFFT)[None, :], axis=1), ops.convert_to_tensor(dft))
    bins = CENTRED_NFFT // 2 + 1
    return ops.matmul(spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2, ops.convert_to_tensor(mel))
