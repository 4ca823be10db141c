"""Adversarial examples against the verifier (attacks.py). The gradient white-box methods follow is given to them
(`score_gradient`: `assembly.attack` passes TensorFlow's, `tf/gradients.py`); AdvGAN's generator is in
`models/advgan.py` and its training in `tf/advgan.py`."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..audio import SAMPLE_RATE, read_audio
from ..errors import ConfigError
from .attacks import METHODS, AttackConfig, AttackResult, project, run_attack, snr_db

__all__ = ["METHODS", "AttackConfig", "AttackResult", "attack_recording", "as_written", "snr_db"]


def as_written(waveform: np.ndarray) -> np.ndarray:
    """The waveform as a 16-bit file stores it."""
    return (np.round(np.clip(waveform, -1, 1) * 32767) / 32767).astype(np.float32)


def attack_recording(
    encoder,
    source,
    reference: np.ndarray,
    threshold: float,
    targeted: bool,
    config: AttackConfig = AttackConfig(),
    generator=None,
    progress: bool = False,
    score_gradient=None,
) -> tuple[np.ndarray, AttackResult]:
    """Attack one recording (a path, or a waveform at 16 kHz) against `encoder`'s cosine score with `reference`;
    `advgan` needs the trained `generator` (targeted only: it was trained to raise the target's score), the
    gradient methods `score_gradient(encoder, reference)` -> oracle(waveform) -> (score, gradient).

    Returns the clean waveform and the result, whose `score_after` is measured on the attacked audio as written
    at 16 bits and embedded again through the whole pipeline.
    """
    clean = read_audio(source) if not isinstance(source, np.ndarray) else np.asarray(source, np.float32)
    unit = np.asarray(reference, np.float32) / max(float(np.linalg.norm(reference)), 1e-12)

    def score(waveform):
        return float(encoder.embed(waveform, SAMPLE_RATE) @ unit)

    if config.method == "advgan":
        return clean, _generated(encoder, clean, unit, threshold, targeted, config.check(), generator, score)
    gradient = None
    if config.method != "nes":
        if score_gradient is None:
            raise ConfigError(f"{config.method} follows the score's gradient: give score_gradient (assembly.attack gives TensorFlow's)")
        gradient = score_gradient(encoder, unit)
    result = run_attack(clean, score, threshold, targeted, config, gradient, progress)
    written = as_written(result.waveform)
    return clean, dataclasses.replace(result, waveform=written, score_after=score(written), queries=result.queries + 1)


def _generated(encoder, clean, unit, threshold, targeted, config, generator, score) -> AttackResult:
    from ..models.advgan import perturb  # Keras: imported only for AdvGAN

    if generator is None or not targeted:
        raise ConfigError("advgan needs a trained generator (train-advgan) and a target speaker: it makes impostors accepted")
    started = time.perf_counter()
    before = score(clean)
    delta = project(perturb(generator, clean, unit), clean, config)  # already at the generator's SNR; the config may bound it more
    written = as_written(clean + delta)
    return AttackResult(written, before, score(written), threshold, True, 1, 2, time.perf_counter() - started)
