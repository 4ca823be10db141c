"""Augmentation: waveform stages (speed, noise, babble, reverberation, gain, codecs and telephone band) and
SpecAugment-style masking of features.

Every stage takes a `numpy.random.Generator`, so a batch seeded by (seed, epoch, index) is the same in a
resumed run. Waveforms are float32 mono at 16 kHz; every stage but speed perturbation keeps the length.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import fftconvolve

from ..errors import ConfigError

NOISE_COLOURS = ("white", "pink", "brown")
CODECS = ("mp3", "opus", "telephone")
SPEEDS = (1.0, 0.9, 1.1)  # speed perturbation; 1.0 first: the unperturbed classes keep the speakers' own labels


def power(signal: np.ndarray) -> float:
    return float(np.mean(np.square(signal, dtype=np.float64)))


def fit_length(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random `length`-sample window of `signal`, tiled first if it is shorter."""
    if signal.size < length:
        signal = np.tile(signal, int(np.ceil(length / signal.size)))
    start = int(rng.integers(0, signal.size - length + 1))
    return signal[start : start + length]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """speech + noise scaled so that 10 log10(P_speech / P_noise) = `snr_db` over the whole segment."""
    noise = fit_length(noise, speech.size, rng).astype(np.float64)
    scale = np.sqrt(power(speech) / max(power(noise), 1e-20) / 10 ** (snr_db / 10))
    return (speech + scale * noise).astype(np.float32)


def coloured_noise(colour: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """White (flat), pink (1/f power) or brown (1/f^2 power) Gaussian noise, unit power."""
    if colour not in NOISE_COLOURS:
        raise ConfigError(f"unknown noise colour {colour!r}; choose from {NOISE_COLOURS}")
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.maximum(np.arange(spectrum.size), 1)
    spectrum /= {"white": 1.0, "pink": np.sqrt(frequencies), "brown": frequencies}[colour]
    noise = np.fft.irfft(spectrum, length)
    return (noise / np.sqrt(max(power(noise), 1e-20))).astype(np.float32)


def babble(others: list[np.ndarray], length: int, rng: np.random.Generator, talkers=(3, 7)) -> np.ndarray:
    """Several other speakers talking at once: the sum of `talkers` random windows, each at unit power."""
    count = int(rng.integers(talkers[0], talkers[1] + 1))
    chosen = rng.choice(len(others), size=min(count, len(others)), replace=False)
    parts = [fit_length(others[i], length, rng).astype(np.float64) for i in chosen]
    return np.sum([p / np.sqrt(max(power(p), 1e-20)) for p in parts], axis=0).astype(np.float32)


def simulated_rir(rng: np.random.Generator, rt60: float, sample_rate: int = 16000) -> np.ndarray:
    """A room response: a direct path, then exponentially decaying noise reaching -60 dB after `rt60` seconds."""
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)  # ln(1000): 60 dB of decay
    tail[0] = 0.0
    delay = int(rng.integers(int(0.002 * sample_rate), int(0.01 * sample_rate)))  # first reflections after 2-10 ms
    rir = np.concatenate([[1.0], np.zeros(delay), 0.3 * tail])
    return (rir / np.linalg.norm(rir)).astype(np.float32)


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room response aligned on its direct path; same length and power as `speech`."""
    peak = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(speech.astype(np.float64), rir.astype(np.float64))[peak : peak + speech.size]
    return (wet * np.sqrt(power(speech) / max(power(wet), 1e-20))).astype(np.float32)


def speed_perturb(speech: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch, as sox `speed`): length / factor samples."""
    if factor == 1.0:
        return speech
    return soxr.resample(speech, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def gain(speech: np.ndarray, decibels: float) -> np.ndarray:
    return (speech * 10 ** (decibels / 20)).astype(np.float32)


def through_channel(speech: np.ndarray, channel: str, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Encode and decode with a low-bit-rate codec (MP3, Opus), or band-limit through 8 kHz (telephone)."""
    if channel == "telephone":
        narrow = soxr.resample(speech, sample_rate, 8000, quality="HQ")
        return fit_length_exact(soxr.resample(narrow, 8000, sample_rate, quality="HQ"), speech.size)
    if channel not in CODECS:
        raise ConfigError(f"unknown channel {channel!r}; choose from {CODECS}")
    buffer = io.BytesIO()
    peak = max(float(np.max(np.abs(speech))), 1e-9)
    format_, subtype = ("MP3", "MPEG_LAYER_III") if channel == "mp3" else ("OGG", "OPUS")
    sf.write(buffer, speech / peak * 0.9, sample_rate, format=format_, subtype=subtype, compression_level=float(rng.uniform(0.7, 1.0)))
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return fit_length_exact(decoded * (peak / 0.9), speech.size)


def fit_length_exact(signal: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad the end to exactly `length` samples (codecs and resamplers round lengths)."""
    signal = np.asarray(signal, dtype=np.float32)
    return signal[:length] if signal.size >= length else np.pad(signal, (0, length - signal.size))


def read_clips(paths, sample_rate: int = 16000) -> list[np.ndarray]:
    """Noise or room-response files as float32 mono arrays at `sample_rate` (through the toolkit's reader)."""
    from ..audio import read_audio

    return [read_audio(Path(p), sample_rate) for p in paths]


def read_clip_folder(folder) -> list[np.ndarray]:
    """`read_clips` of every file with an extension in `folder` (a recipe's noise_dir or rir_dir); none for ""."""
    return read_clips(sorted(Path(folder).glob("*.*"))) if folder else []


@dataclass(frozen=True)
class WaveformAugmentation:
    """What `augment` does to each training segment, each stage with its probability."""

    noise_probability: float = 0.6
    snr_db: tuple[float, float] = (0.0, 20.0)
    noise_kinds: tuple[str, ...] = ("file", "babble", "coloured")
    reverb_probability: float = 0.3
    rt60: tuple[float, float] = (0.2, 0.8)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    channel_probability: float = 0.1
    channels: tuple[str, ...] = CODECS

    def __post_init__(self):
        for name in ("noise_probability", "reverb_probability", "channel_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.snr_db[0] > self.snr_db[1] or self.rt60[0] <= 0 or self.rt60[0] > self.rt60[1]:
            raise ConfigError(f"bad ranges: snr_db {self.snr_db}, rt60 {self.rt60}")


def augment(
    speech: np.ndarray,
    rng: np.random.Generator,
    config: WaveformAugmentation = WaveformAugmentation(),
    noises: list[np.ndarray] = (),
    rirs: list[np.ndarray] = (),
    others: list[np.ndarray] = (),
) -> np.ndarray:
    """One augmented copy of `speech` (same length): reverberation, then noise, then gain, then a channel.

    `noises` and `rirs` are clips read once (`read_clips`); `others` are other speakers' segments for babble.
    Where a file source is empty, coloured noise and simulated rooms stand in.
    """
    out = speech.astype(np.float32)
    if rng.random() < config.reverb_probability:
        use_file = len(rirs) and rng.random() < 0.5
        rir = rirs[int(rng.integers(len(rirs)))] if use_file else simulated_rir(rng, float(rng.uniform(*config.rt60)))
        out = reverberate(out, rir)
    if rng.random() < config.noise_probability:
        kind = config.noise_kinds[int(rng.integers(len(config.noise_kinds)))]
        if kind == "file" and len(noises):
            noise = noises[int(rng.integers(len(noises)))]
        elif kind == "babble" and len(others):
            noise = babble(list(others), out.size, rng)
        else:
            noise = coloured_noise(NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))], out.size, rng)
        out = mix_at_snr(out, noise, float(rng.uniform(*config.snr_db)), rng)
    out = gain(out, float(rng.uniform(*config.gain_db)))
    if rng.random() < config.channel_probability:
        out = through_channel(out, config.channels[int(rng.integers(len(config.channels)))], rng)
    return out


def mask_spans(crops: np.ndarray, rng: np.random.Generator, max_bands: int = 8, max_frames: int = 20) -> None:
    """SpecAugment-style masking in place: per crop (frames, bands), one band of filterbanks and one span of frames set to 0."""
    num_crops, num_frames, num_bands = crops.shape[:3]
    for crop, band_width, band_start, span, span_start in zip(
        crops,
        rng.integers(0, max_bands + 1, num_crops),
        rng.integers(0, max(1, num_bands - max_bands), num_crops),
        rng.integers(0, max_frames + 1, num_crops),
        rng.integers(0, max(1, num_frames - max_frames), num_crops),
    ):
        crop[:, band_start : band_start + band_width] = 0
        crop[span_start : span_start + span] = 0
