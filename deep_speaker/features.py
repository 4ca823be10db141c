"""Deep Speaker input features: 64 mel filterbank energies, standardised.

With `energies="linear"` (the default) numerically identical (to float32 rounding) to the reference's
`python_speech_features.fbank(signal, 16000, nfilt=64)` followed by its per-frame normalisation loop,
but vectorised: one strided view, one batched FFT, one matrix product and one normalisation.
`energies="log"` takes log energies instead, so the two or three loudest bands do not swamp the others,
and `normalisation="utterance"` standardises the whole utterance at once rather than each frame, which
keeps frame loudness; both train much faster and generalise better on small corpora (see the model card).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .audio import FRAME_LENGTH, FRAME_STEP, SAMPLE_RATE, TRIM_METHODS, describe_source, load_speech
from .errors import ConfigError, NoSpeechError, TooShortError

NUM_FBANKS = 64
NUM_FRAMES = 160  # training crop: about 1.6 s
NFFT = 512
PREEMPHASIS = 0.97
ENERGY_SCALES = ("linear", "log")
KINDS = ("deep_speaker", "resemblyzer", "speechbrain")  # ours (the reference's), GE2E's (Resemblyzer), SpeechBrain's Fbank
SPEECHBRAIN_TOP_DB = 80.0  # SpeechBrain's Fbank clamps each utterance to 80 dB below its loudest band
RESEMBLYZER_NFFT = 400  # librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160): hann window, centred
# Resemblyzer's partial utterances: 160 frames every round(16000 / 1.3 / 160) = 77 (1.3 a second), the last kept if it covers 75 %
PARTIAL_FRAMES, PARTIAL_STEP, PARTIAL_MIN_COVERAGE = 160, 77, 0.75
NORMALISATIONS = ("frame", "utterance")
SPEECH_BLOCK_FRAMES = 10  # 100 ms: long enough to average out noise, short enough to keep syllables (4 Hz)
# stationary noise of any colour, hum, dither: at most 4.0 dB at 1-60 s; speech: 4.6 dB or more even as 1 s crops
# (benchmarks/speech_check.py on every recording of ../shared/data)
MIN_SPEECH_VARIATION_DB = 4.3
MIN_TRAINING_SECONDS = 0.3  # a training recording shorter than this (trimmed) cannot be checked for speech


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input; defaults are the reference's."""

    sample_rate: int = SAMPLE_RATE
    num_fbanks: int = NUM_FBANKS
    trim: str = "reference"  # reference | energy | none
    energies: str = "linear"  # linear (reference) | log
    normalisation: str = "frame"  # frame (reference) | utterance
    kind: str = "deep_speaker"  # deep_speaker | resemblyzer (GE2E: 40-band power mel, no normalisation)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown front end {self.kind!r}; choose from {KINDS}")
        if self.kind != "deep_speaker" and (self.energies, self.normalisation, self.sample_rate) != ("linear", "frame", SAMPLE_RATE):
            raise ConfigError(f"the {self.kind} front end is fixed: 16 kHz, its own energies and normalisation (leave those options unset)")
        if self.trim not in TRIM_METHODS:
            raise ConfigError(f"unknown trim method {self.trim!r}; choose from {TRIM_METHODS}")
        if self.energies not in ENERGY_SCALES:
            raise ConfigError(f"unknown filterbank energies {self.energies!r}; choose from {ENERGY_SCALES}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(f"unknown normalisation {self.normalisation!r}; choose from {NORMALISATIONS}")
        for name in ("sample_rate", "num_fbanks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"feature option {name} must be a positive integer, got {value!r}")

    def describe(self) -> str:
        """In words, for error messages."""
        if self.kind == "speechbrain":
            return f"SpeechBrain's Fbank ({self.num_fbanks} bands, {self.sample_rate} Hz, log, sentence mean normalisation)"
        if self.kind == "resemblyzer":
            return f"Resemblyzer's power mel spectrogram ({self.num_fbanks} bands, {self.sample_rate} Hz, padded to its partial windows)"
        return f"{self.energies} filterbank energies ({self.num_fbanks} bands, {self.sample_rate} Hz, {self.normalisation} normalisation)"

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        """From a stored dict; keys missing in files written before a field existed take its default."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


@lru_cache(maxsize=8)
def mel_filterbank(num_filters: int = NUM_FBANKS, nfft: int = NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular mel filters (num_filters, nfft // 2 + 1), built exactly as python_speech_features does."""
    mel_points = np.linspace(_hz_to_mel(0), _hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mel_points) / sample_rate)
    fft_bins = np.arange(nfft // 2 + 1)
    lower, centre, upper = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((fft_bins >= lower) & (fft_bins < centre), (fft_bins - lower) / (centre - lower), 0.0)
        falling = np.where((fft_bins >= centre) & (fft_bins < upper), (upper - fft_bins) / (upper - centre), 0.0)
    filters = rising + falling
    filters.setflags(write=False)
    return filters


def num_frames_of(num_samples: int) -> int:
    """Frames psf cuts from `num_samples`: one, or enough that the zero-padded last frame covers the end."""
    return 1 if num_samples <= FRAME_LENGTH else 1 + int(np.ceil((num_samples - FRAME_LENGTH) / FRAME_STEP))


def frame_signal(signal: np.ndarray) -> np.ndarray:
    """Pre-emphasise and cut into 25 ms frames every 10 ms, zero-padding the last frame (psf framing)."""
    signal = np.asarray(signal, dtype=np.float32)
    emphasised = np.empty(signal.size, dtype=np.float32)
    emphasised[0] = signal[0]
    emphasised[1:] = signal[1:] - PREEMPHASIS * signal[:-1]
    num_frames = num_frames_of(signal.size)
    padded = np.zeros((num_frames - 1) * FRAME_STEP + FRAME_LENGTH, dtype=np.float64)
    padded[: signal.size] = emphasised
    return np.lib.stride_tricks.sliding_window_view(padded, FRAME_LENGTH)[::FRAME_STEP]


def fbank_energies(
    signal: np.ndarray, num_filters: int = NUM_FBANKS, sample_rate: int = SAMPLE_RATE, block_frames: int = 4096
) -> np.ndarray:
    """Linear (not log) mel filterbank energies (frames, num_filters), float64, zeros replaced by eps.

    The spectrum is computed `block_frames` frames at a time, so memory stays bounded for long recordings.
    """
    energies = blocked_mel_power(frame_signal(signal), mel_filterbank(num_filters, NFFT, sample_rate), NFFT, block_frames=block_frames)
    energies[energies == 0] = np.finfo(float).eps
    return energies


def blocked_mel_power(frames: np.ndarray, filters: np.ndarray, nfft: int, prepare=None, block_frames: int = 4096) -> np.ndarray:
    """Power spectra / nfft of `frames` (each block passed through `prepare` first, if given) summed by `filters`
    (bands, bins): (frames, bands) float64, `block_frames` frames at a time so memory stays bounded."""
    energies = np.empty((frames.shape[0], filters.shape[0]))
    for start in range(0, frames.shape[0], block_frames):
        block = frames[start : start + block_frames]
        spectrum = np.fft.rfft(block if prepare is None else prepare(block), nfft)
        energies[start : start + block_frames] = ((spectrum.real**2 + spectrum.imag**2) / nfft) @ filters.T
    return energies


def normalize_frames(features: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
    """Per-frame standardisation: (v - mean(v)) / max(std(v), epsilon) for each row v."""
    mean = features.mean(axis=1, keepdims=True)
    std = features.std(axis=1, keepdims=True)
    return (features - mean) / np.maximum(std, epsilon)


def normalize_utterance(features: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
    """One mean and standard deviation for the whole utterance: removes the recording gain, keeps how
    loudness moves from frame to frame and band to band."""
    return (features - features.mean()) / max(features.std(), epsilon)


def compute_features(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Waveform (already trimmed) -> the model input of `config` (frames, num_fbanks) float32."""
    if config.kind == "resemblyzer":
        return resemblyzer_mel(signal, config.num_fbanks)
    if config.kind == "speechbrain":
        return speechbrain_fbank(signal, config.num_fbanks)
    return features_from_energies(fbank_energies(signal, config.num_fbanks, config.sample_rate), config)


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
def slaney_mel_filterbank(num_filters: int, nfft: int = RESEMBLYZER_NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1): librosa's default mel filters (Slaney scale, area-normalised triangles,
    0 Hz to Nyquist), which Resemblyzer uses; tested against `librosa.filters.mel`."""
    edges = _slaney_mel_to_hz(np.linspace(0.0, _slaney_hz_to_mel(sample_rate / 2.0), num_filters + 2))
    ramps = edges[:, None] - np.fft.rfftfreq(nfft, 1.0 / sample_rate)[None, :]
    widths = np.diff(edges)
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def speechbrain_mel_filterbank(num_filters: int, nfft: int = RESEMBLYZER_NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1): SpeechBrain's triangular filters (HTK mel scale, 0 Hz to Nyquist); as in its
    `Filterbank`, each triangle's both slopes take the width of its left band."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_filters + 2))
    slope = (np.linspace(0, sample_rate // 2, nfft // 2 + 1)[None, :] - edges[1:-1, None]) / np.diff(edges)[:-1, None]
    return np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope))


def cosine_window(alpha: float, length: int = RESEMBLYZER_NFFT) -> np.ndarray:
    """Periodic generalised cosine window alpha - (1 - alpha) cos(2 pi n / length): hann 0.5, hamming 0.54 (torch's and
    librosa's STFT windows)."""
    return alpha - (1 - alpha) * np.cos(2 * np.pi * np.arange(length) / length)


HANN, HAMMING = 0.5, 0.54


def centred_power_mel(signal: np.ndarray, window_alpha: float, filters: np.ndarray, pad_end: int = 0) -> np.ndarray:
    """Mel energies (frames, filters) float64 of centred 25 ms frames every 10 ms (zero padding, `pad_end` more zeros
    at the end) under a periodic cosine window: the STFT that librosa and torch compute with `center=True`."""
    signal = np.pad(np.asarray(signal, dtype=np.float64), (RESEMBLYZER_NFFT // 2, pad_end + RESEMBLYZER_NFFT // 2))
    frames = np.lib.stride_tricks.sliding_window_view(signal, RESEMBLYZER_NFFT)[::FRAME_STEP]
    spectrum = np.fft.rfft(frames * cosine_window(window_alpha), RESEMBLYZER_NFFT)
    return (spectrum.real**2 + spectrum.imag**2) @ filters.T


def speechbrain_fbank(signal: np.ndarray, num_filters: int = 80) -> np.ndarray:
    """SpeechBrain's `Fbank` then sentence mean normalisation: centred 25 ms hamming frames every 10 ms (zero
    padding), power spectrum, its filters, 10 log10 (floor 1e-10, then 80 dB below the utterance's maximum),
    each band's mean over the utterance subtracted. (frames, num_filters) float32."""
    decibels = 10 * np.log10(np.maximum(centred_power_mel(signal, HAMMING, speechbrain_mel_filterbank(num_filters)), 1e-10))
    decibels = np.maximum(decibels, decibels.max() - SPEECHBRAIN_TOP_DB)
    return (decibels - decibels.mean(axis=0)).astype(np.float32)


def resemblyzer_mel(signal: np.ndarray, num_filters: int = 40) -> np.ndarray:
    """GE2E input as Resemblyzer computes it: padded to its partial grid, centred 25 ms hann frames every 10 ms
    (zero padding), power spectrum, Slaney mel, no log, no normalisation. (frames, num_filters) float32."""
    padding = partial_grid_length(len(signal)) - len(signal)
    return centred_power_mel(signal, HANN, slaney_mel_filterbank(num_filters), padding).astype(np.float32)


def features_from_energies(energies: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Linear filterbank energies (frames, bands) -> the normalised features of `config`."""
    if config.energies == "log":
        energies = np.log(energies)
    normalize = normalize_frames if config.normalisation == "frame" else normalize_utterance
    return normalize(energies).astype(np.float32)


def file_features(path, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Read, trim and featurise one file (the reference's `read_mfcc`) for training: it must be speech, and long
    enough (`MIN_TRAINING_SECONDS`) to tell; noise, hum and fragments are refused rather than cached."""
    speech = load_speech(path, trim=config.trim, sample_rate=config.sample_rate)
    if speech.size < MIN_TRAINING_SECONDS * config.sample_rate:
        raise TooShortError(
            f"{path}: {speech.size / config.sample_rate:.2f} s of audio after '{config.trim}' trimming; training needs at least "
            f"{MIN_TRAINING_SECONDS:g} s, enough to tell speech from noise"
        )
    return checked_features(speech, config, path)


def checked_features(speech: np.ndarray, config: FeatureConfig, source=None, check: bool = True) -> np.ndarray:
    """Model-input features of trimmed `speech`, after the speech check (`require_speech`, unless not `check`)."""
    if check:
        require_speech(speech, source, config.sample_rate)
    return compute_features(speech, config)


def crop_or_pad(features: np.ndarray, num_frames: int = NUM_FRAMES, rng: np.random.Generator | None = None) -> np.ndarray:
    """A `num_frames` window: random start if `rng` is given, else the first frames; zero-pad at the end."""
    if features.shape[0] >= num_frames:
        start = int(rng.integers(0, features.shape[0] - num_frames + 1)) if rng is not None else 0
        return features[start : start + num_frames]
    padding = np.zeros((num_frames - features.shape[0], features.shape[1]), dtype=features.dtype)
    return np.concatenate([features, padding])


def speech_check_energies(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The speech check's own analysis: `NUM_FBANKS` mel band energies (frames, bands) of 25 ms frames every 10 ms,
    each frame's mean removed and Hann-windowed. The model front ends' unwindowed frames let infrasonic drift (brown
    noise, a DC offset) leak into every low band, which then moves like speech; a window and mean removal keep the
    bands' fluctuation for stationary noise at what its bandwidth alone gives."""
    length, step = round(0.025 * sample_rate), round(0.010 * sample_rate)
    nfft = 1 << (length - 1).bit_length()
    signal = np.asarray(samples, dtype=np.float64)
    if signal.size < length:
        signal = np.pad(signal, (0, length - signal.size))
    frames = np.lib.stride_tricks.sliding_window_view(signal, length)[::step]
    window = np.hanning(length)
    energies = blocked_mel_power(
        frames, mel_filterbank(NUM_FBANKS, nfft, sample_rate), nfft, lambda block: (block - block.mean(axis=1, keepdims=True)) * window
    )
    return energies + 1e-20


def spectro_temporal_variation(energies: np.ndarray) -> float:
    """How much the spectrum moves over time, in dB, from `speech_check_energies`: per band, the 10-90 % range of its
    100 ms log energies; the 90th percentile over bands (speech may fill only part of the band: telephone, children).
    Stationary noise of any colour, hum and dither stay at 4 dB or under whatever their level and length; speech,
    which starts and stops syllable by syllable, moves by more, even in a 1 s crop. NaN when the signal is too
    short to judge (under 0.3 s)."""
    blocks = energies.shape[0] // SPEECH_BLOCK_FRAMES
    if blocks < 3:
        return float("nan")
    block_energies = energies[: blocks * SPEECH_BLOCK_FRAMES].reshape(blocks, SPEECH_BLOCK_FRAMES, -1).mean(axis=1)
    levels = 10 * np.log10(block_energies)
    return float(np.percentile(np.percentile(levels, 90, axis=0) - np.percentile(levels, 10, axis=0), 90))


def require_speech(samples: np.ndarray, source=None, sample_rate: int = SAMPLE_RATE) -> None:
    """`NoSpeechError` when the spectrum of `samples` does not move like speech (see above)."""
    variation = spectro_temporal_variation(speech_check_energies(samples, sample_rate))
    if variation < MIN_SPEECH_VARIATION_DB:
        raise NoSpeechError(
            f"{describe_source(source)}: no speech found (the spectrum varies by {variation:.1f} dB over time, "
            f"speech by more than {MIN_SPEECH_VARIATION_DB:g} dB): stationary noise, hum or dither"
        )
