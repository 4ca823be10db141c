"""Voice-conversion spoofs: a source speaker's words in (an imitation of) a target speaker's voice.

`world_convert` is the signal-processing family: WORLD analysis (pyworld: F0 by DIO + StoneMask, spectral envelope
by CheapTrick, aperiodicity by D4C) of both recordings, the source's log-F0 mapped to the target's mean and spread
(voiced frames), its spectral envelope's 40 mel-cepstral coefficients mapped to the target's per-coefficient mean
and spread, then WORLD synthesis at the source's loudness. A classic statistics-based converter (as used for
spoofed speech in the ASVspoof corpora), needing no training.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import AudioError

CEPSTRAL_COEFFICIENTS = 40
FRAME_PERIOD_MS = 5.0


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
    speech = pyworld.synthesize(converted_f0, envelope, aperiodicity, sample_rate, frame_period=FRAME_PERIOD_MS)[: source.size]
    speech = np.pad(speech, (0, source.size - speech.size))
    loudness = np.sqrt(np.mean(np.square(source, dtype=np.float64))) / max(np.sqrt(np.mean(speech**2)), 1e-12)
    return np.clip(speech * loudness, -1.0, 1.0).astype(np.float32)
