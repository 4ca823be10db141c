"""Adversarial examples against the verifier (attacks.py); the gradient they follow lives in `tf/gradients.py`."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..audio import SAMPLE_RATE, read_audio
from .attacks import METHODS, AttackConfig, AttackResult, run_attack, snr_db

__all__ = ["METHODS", "AttackConfig", "AttackResult", "attack_recording", "as_written", "snr_db"]


def as_written(waveform: np.ndarray) -> np.ndarray:
    """The waveform as a 16-bit file stores it."""
    return (np.round(np.clip(waveform, -1, 1) * 32767) / 32767).astype(np.float32)


def attack_recording(encoder, source, reference: np.ndarray, threshold: float, targeted: bool, config: AttackConfig = AttackConfig()) -> tuple[np.ndarray, AttackResult]:
    """Attack one recording (a path, or a waveform at 16 kHz) against `encoder`'s cosine score with `reference`.

    Returns the clean waveform and the result, whose `score_after` is measured on the attacked audio as written
    at 16 bits and embedded again through the whole pipeline.
    """
    clean = read_audio(source) if not isinstance(source, np.ndarray) else np.asarray(source, np.float32)
    unit = np.asarray(reference, np.float32) / max(float(np.linalg.norm(reference)), 1e-12)

    def score(waveform):
        return float(encoder.embed(waveform, SAMPLE_RATE) @ unit)

    gradient = None
    if config.method != "nes":
        from ..tf.gradients import ScoreGradient

        gradient = ScoreGradient(encoder, unit)
    result = run_attack(clean, score, threshold, targeted, config, gradient)
    written = as_written(result.waveform)
    return clean, dataclasses.replace(result, waveform=written, score_after=score(written), queries=result.queries + 1)
