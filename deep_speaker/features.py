"""Model input: the feature recipe (`FeatureConfig`), features computed by its front end (`frontends/`), crops, and the
speech check that refuses recordings without speech (stationary noise, hum, dither) before any model sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, TRIM_METHODS, describe_source, load_speech
from .errors import ConfigError, NoSpeechError, TooShortError
from .frontends import FRONT_ENDS, front_end
from .frontends.deep_speaker import NUM_FBANKS
from .frontends.spectra import blocked_mel_power, mel_filterbank

NUM_FRAMES = 160  # training crop: about 1.6 s
ENERGY_SCALES = ("linear", "log")
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
    kind: str = "deep_speaker"  # the front end (frontends.FRONT_ENDS): deep_speaker | resemblyzer | speechbrain

    def __post_init__(self):
        if not front_end(self.kind).takes_options and (self.energies, self.normalisation, self.sample_rate) != (
            "linear",
            "frame",
            SAMPLE_RATE,
        ):
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
        return front_end(self.kind).describe(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        """From a stored dict; keys missing in files written before a field existed take its default."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def compute_features(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Waveform (already trimmed) -> the model input of `config` (frames, num_fbanks) float32, by its front end."""
    return FRONT_ENDS[config.kind].compute(signal, config)


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
