"""Voice-conversion spoofs: a source speaker's words in (an imitation of) a target speaker's voice.

`world_convert` is the signal-processing family: WORLD analysis (pyworld: F0 by DIO + StoneMask, spectral envelope
by CheapTrick, aperiodicity by D4C) of both recordings, the source's log-F0 mapped to the target's mean and spread
(voiced frames), its spectral envelope's 40 mel-cepstral coefficients mapped to the target's per-coefficient mean
and spread, then WORLD synthesis at the source's loudness. A classic statistics-based converter (as used for
spoofed speech in the ASVspoof corpora), needing no training.

`again_convert` is the learnt family: an AGAIN-VC converter (`models/again_vc.py`, trained by `train-again`) maps
the source's log-mel spectrogram to the target's voice, and Griffin-Lim (librosa: the mel filterbank inverted by
non-negative least squares, then phase by iteration) turns it back into audio. `log_mel` is the analysis both
training and conversion use, so the converter and the vocoder agree on the spectrogram.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE, to_model_input
from ..errors import AudioError, ConfigError

CEPSTRAL_COEFFICIENTS = 40
FRAME_PERIOD_MS = 5.0
# AGAIN-VC's spectrogram at 16 kHz: 64 ms windows every 16 ms, 80 mel bands up to 8 kHz, log10 floored at 1e-5
MEL = {"n_fft": 1024, "hop_length": 256, "n_mels": 80, "fmin": 0.0, "fmax": 8000.0}
LOG_FLOOR = 1e-5
GRIFFIN_LIM_ITERATIONS = 64
MIN_CONVERSION_SECONDS = 0.25
CONVERSION_METHODS = {  # `convert-voice --method`
    "world": "WORLD vocoder, F0 and mel-cepstrum statistics mapped to the target",
    "again": "an AGAIN-VC converter (train-again), Griffin-Lim vocoded",
}


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames, 80) log10 mel magnitudes of a mono waveform (AGAIN-VC's input and output)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(waveform, np.float32), sr=sample_rate, power=1.0, **MEL)
    return np.log10(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


def griffin_lim(
    log_mel_frames: np.ndarray, length: int, sample_rate: int = SAMPLE_RATE, iterations: int = GRIFFIN_LIM_ITERATIONS, seed: int = 0
) -> np.ndarray:
    """A waveform of `length` samples whose log-mel spectrogram approximates `log_mel_frames` (frames, 80)."""
    import librosa

    mel = np.power(10.0, np.asarray(log_mel_frames, np.float64).T)
    magnitude = librosa.feature.inverse.mel_to_stft(mel, sr=sample_rate, n_fft=MEL["n_fft"], power=1.0, fmin=MEL["fmin"], fmax=MEL["fmax"])
    return librosa.griffinlim(
        magnitude, n_iter=iterations, hop_length=MEL["hop_length"], n_fft=MEL["n_fft"], length=length, random_state=seed
    ).astype(np.float32)


def _at_loudness_of(speech: np.ndarray, source: np.ndarray) -> np.ndarray:
    """`speech` cut or padded to the source's length, at the source's RMS level, within [-1, 1]."""
    speech = np.pad(speech[: source.size], (0, max(0, source.size - speech.size)))
    gain = np.sqrt(np.mean(np.square(source, dtype=np.float64))) / max(np.sqrt(np.mean(np.square(speech, dtype=np.float64))), 1e-12)
    return np.clip(speech * gain, -1.0, 1.0).astype(np.float32)


def _analyse(waveform: np.ndarray, sample_rate: int, name: str):
    import pyworld

    signal = np.ascontiguousarray(waveform, dtype=np.float64)
    f0, times = pyworld.dio(signal, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(signal, f0, times, sample_rate)
    if np.count_nonzero(f0) < 10:
        raise AudioError(f"{name}: fewer than 10 voiced frames; voice conversion needs voiced speech")
    envelope = pyworld.cheaptrick(signal, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(signal, f0, times, sample_rate)
    cepstrum = pyworld.code_spectral_envelope(envelope, sample_rate, CEPSTRAL_COEFFICIENTS)
    return f0, cepstrum, aperiodicity, envelope.shape[1]


def world_convert(source: np.ndarray, target: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`source`'s speech with `target`'s pitch statistics and spectral-envelope statistics (mono float32 at
    `sample_rate`, the source's length and loudness, within [-1, 1])."""
    import pyworld

    f0, cepstrum, aperiodicity, bins = _analyse(source, sample_rate, "source")
    target_f0, target_cepstrum, _, _ = _analyse(target, sample_rate, "target")
    voiced, target_voiced = f0 > 0, target_f0 > 0
    log_f0, target_log_f0 = np.log(f0[voiced]), np.log(target_f0[target_voiced])
    converted_f0 = np.zeros_like(f0)
    converted_f0[voiced] = np.exp((log_f0 - log_f0.mean()) / max(log_f0.std(), 1e-6) * target_log_f0.std() + target_log_f0.mean())
    spread = cepstrum.std(axis=0)
    converted = (cepstrum - cepstrum.mean(axis=0)) / np.maximum(spread, 1e-6) * target_cepstrum.std(axis=0) + target_cepstrum.mean(axis=0)
    envelope = pyworld.decode_spectral_envelope(np.ascontiguousarray(converted), sample_rate, 2 * (bins - 1))
    return _at_loudness_of(pyworld.synthesize(converted_f0, envelope, aperiodicity, sample_rate, frame_period=FRAME_PERIOD_MS), source)


def again_convert(converter, source: np.ndarray, target: np.ndarray, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """`source`'s speech in `target`'s voice by an AGAIN-VC `converter` (`load_converter`), vocoded by Griffin-Lim:
    mono float32 at `sample_rate`, the source's length and loudness, within [-1, 1]."""
    import keras

    for name, waveform in (("source", source), ("target", target)):
        if len(waveform) < MIN_CONVERSION_SECONDS * sample_rate:
            raise AudioError(f"{name}: {len(waveform) / sample_rate:.2f} s is too short to convert (at least {MIN_CONVERSION_SECONDS} s)")
    # empty, NaN, silent or oddly shaped input is refused as everywhere else (the message names source or target)
    source, target = (
        to_model_input(waveform, sample_rate, sample_rate, source=name) for name, waveform in (("source", source), ("target", target))
    )
    converted = converter([log_mel(source, sample_rate)[None], log_mel(target, sample_rate)[None]], training=False)
    return _at_loudness_of(griffin_lim(keras.ops.convert_to_numpy(converted)[0], source.size, sample_rate, seed=seed), source)


def convert_voice(method: str, source: np.ndarray, target: np.ndarray, converter=None) -> np.ndarray:
    """`source`'s words in `target`'s voice by one of `CONVERSION_METHODS` (`again` needs its `converter`)."""
    if method not in CONVERSION_METHODS:
        raise ConfigError(f"unknown conversion method {method!r}; choose from {sorted(CONVERSION_METHODS)}")
    if method == "world":
        return world_convert(source, target)
    if converter is None:
        raise ConfigError("--method again needs --converter (a model trained by `train-again`)")
    return again_convert(converter, source, target)
