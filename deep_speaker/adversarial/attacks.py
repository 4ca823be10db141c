"""Adversarial attacks on the verifier, on the raw waveform: FGSM, BIM (I-FGSM), PGD, a score-only NES attack, and
AdvGAN (a trained generator's perturbation in one forward pass: `models/advgan.py`, `tf/advgan.py`).

Goals: *targeted* - an impostor's recording accepted as a chosen speaker (raise the score against the target's
embedding past the threshold); *untargeted* - a genuine speaker rejected (lower the score against their own
embedding below it). Bounds: an L-inf amplitude `epsilon`, and/or a signal-to-perturbation ratio `snr_db` (an L2
ball of radius |x| 10^(-snr/20)); the result always stays in [-1, 1]. White-box attacks follow the exact gradient
of the pipeline (`tf/gradients.py`); NES (as in FAKEBOB) estimates it from scores alone, counting queries.
Success is judged on the attacked audio as it will be heard: written at 16 bits and embedded again from the start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError

METHODS = ("fgsm", "bim", "pgd", "nes", "advgan")


@dataclass(frozen=True)
class AttackConfig:
    method: str = "pgd"
    snr_db: float | None = 30.0  # perturbation at least this far below the signal (None: no SNR bound)
    epsilon: float | None = None  # L-inf amplitude bound (None: none; FGSM and BIM need one or an SNR bound)
    steps: int = 50  # iterations (FGSM: 1)
    step_size: float | None = None  # per iteration; default 2.5 x bound / steps (Madry et al.)
    random_starts: int = 1  # PGD restarts from random points in the ball
    margin: float = 0.05  # stop once the score is this far past the threshold (so 16-bit rounding cannot undo it)
    nes_samples: int = 50  # NES: antithetic pairs per gradient estimate (2 queries each)
    nes_sigma: float = 0.001  # NES: search distribution's standard deviation (waveform amplitude)
    seed: int = 0

    def check(self) -> AttackConfig:
        if self.method not in METHODS:
            raise ConfigError(f"unknown attack {self.method!r}; choose from {METHODS}")
        if self.snr_db is None and self.epsilon is None:
            raise ConfigError("an attack needs a bound: snr_db (dB) and/or epsilon (L-inf amplitude)")
        if self.epsilon is not None and not 0 < self.epsilon <= 1:
            raise ConfigError(f"epsilon is an amplitude in (0, 1], got {self.epsilon}")
        if self.snr_db is not None and not 0 <= self.snr_db <= 120:  # below 0 dB the "perturbation" drowns the speech
            raise ConfigError(f"snr_db must be 0-120 dB (the perturbation below the signal), got {self.snr_db}")
        if self.steps < 1 or self.random_starts < 1 or self.nes_samples < 1:
            raise ConfigError("steps, random_starts and nes_samples must be at least 1")
        if not (self.margin >= 0 and self.nes_sigma > 0 and (self.step_size is None or self.step_size > 0)):
            raise ConfigError("margin must be >= 0, and nes_sigma and step_size positive")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be 0 to 2^32 - 1, got {self.seed}")
        return replace(self, steps=1, random_starts=1) if self.method in ("fgsm", "advgan") else self


@dataclass(frozen=True)
class AttackResult:
    waveform: np.ndarray  # the attacked recording, in [-1, 1]
    score_before: float
    score_after: float  # of the attacked waveform, as the optimiser last saw it
    threshold: float
    targeted: bool
    steps: int
    queries: int  # score (or gradient) evaluations
    seconds: float

    @property
    def success(self) -> bool:
        return self.score_after >= self.threshold if self.targeted else self.score_after < self.threshold

    def snr_db(self, clean: np.ndarray) -> float:
        return snr_db(clean, self.waveform - clean)


def snr_db(signal: np.ndarray, perturbation: np.ndarray) -> float:
    noise = float(np.sum(np.square(perturbation, dtype=np.float64)))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(np.square(signal, dtype=np.float64))) / noise)


def project(delta: np.ndarray, clean: np.ndarray, config: AttackConfig) -> np.ndarray:
    """The nearest allowed perturbation (L-inf clip, valid audio, then inside the SNR ball; the last scaling keeps
    the first two, since the set they allow is convex and contains 0)."""
    if config.epsilon is not None:
        delta = np.clip(delta, -config.epsilon, config.epsilon)
    delta = np.clip(clean + delta, -1.0, 1.0) - clean
    if config.snr_db is not None:
        radius = float(np.linalg.norm(clean)) * 10 ** (-config.snr_db / 20)
        norm = float(np.linalg.norm(delta))
        if norm > radius:
            delta = delta * (radius / norm)
    return delta.astype(np.float32)


def _step(gradient: np.ndarray, clean: np.ndarray, config: AttackConfig) -> np.ndarray:
    """Steepest ascent for the bound: sign of the gradient under L-inf, its direction under an SNR bound alone."""
    if config.epsilon is not None:
        size = config.step_size or (config.epsilon if config.method == "fgsm" else 2.5 * config.epsilon / config.steps)
        return size * np.sign(gradient)
    radius = float(np.linalg.norm(clean)) * 10 ** (-config.snr_db / 20)
    size = config.step_size or (radius if config.method == "fgsm" else 2.5 * radius / config.steps)
    return size * gradient / max(float(np.linalg.norm(gradient)), 1e-20)


def _random_start(clean: np.ndarray, config: AttackConfig, rng: np.random.Generator) -> np.ndarray:
    if config.method != "pgd":
        return np.zeros_like(clean)
    if config.epsilon is not None:
        return project(rng.uniform(-config.epsilon, config.epsilon, clean.shape), clean, config)
    direction = rng.standard_normal(clean.shape)
    radius = float(np.linalg.norm(clean)) * 10 ** (-config.snr_db / 20)
    return project(direction * rng.uniform(0, radius) / np.linalg.norm(direction), clean, config)


def nes_gradient(score, waveform: np.ndarray, config: AttackConfig, rng: np.random.Generator) -> np.ndarray:
    """Natural-evolution-strategies estimate of the score's gradient from 2 x `nes_samples` scores (antithetic)."""
    noise = rng.standard_normal((config.nes_samples, waveform.size)).astype(np.float32)
    ups = np.array([score(waveform + config.nes_sigma * n) for n in noise])
    downs = np.array([score(waveform - config.nes_sigma * n) for n in noise])
    return ((ups - downs)[:, None] * noise).sum(axis=0) / (2 * config.nes_sigma * config.nes_samples)


def run_attack(
    clean: np.ndarray, score, threshold: float, targeted: bool, config: AttackConfig, gradient=None, progress: bool = False
) -> AttackResult:
    """Attack `clean` (mono float32 in [-1, 1]) given `score(waveform) -> float` and, for white-box methods,
    `gradient(waveform) -> (score, d score / d waveform)`; the best perturbation over random starts is kept.
    `progress`: a bar over the iterations with the score and the queries so far."""
    from tqdm import tqdm

    config = config.check()
    if config.method != "nes" and gradient is None:
        raise ConfigError(f"{config.method} is a white-box attack: it needs the model's gradient")
    clean = np.asarray(clean, np.float32)
    rng = np.random.default_rng(config.seed)
    sign = 1.0 if targeted else -1.0
    started, queries, steps = time.perf_counter(), 0, 0
    before = score(clean)
    queries += 1
    best_delta, best_objective = np.zeros_like(clean), sign * before

    def reached(value: float) -> bool:
        return value >= threshold + config.margin if targeted else value < threshold - config.margin

    bar = tqdm(total=config.steps * config.random_starts, desc=config.method, unit="step", disable=not progress)
    for _ in range(config.random_starts):
        delta = _random_start(clean, config, rng)
        for _ in range(config.steps):
            if config.method == "nes":
                current = score(clean + delta)
                direction = nes_gradient(score, clean + delta, config, rng)
                queries += 1 + 2 * config.nes_samples
            else:
                current, direction = gradient(clean + delta)
                queries += 1
            if sign * current > best_objective:
                best_delta, best_objective = delta, sign * current
            if reached(current):
                break
            delta = project(delta + sign * _step(direction, clean, config), clean, config)
            steps += 1
            bar.update(1)
            bar.set_postfix(score=f"{current:.3f}", queries=queries)
        else:
            current = score(clean + delta)
            queries += 1
            if sign * current > best_objective:
                best_delta, best_objective = delta, sign * current
        if reached(sign * best_objective):
            break
    bar.close()
    return AttackResult(
        clean + best_delta, before, sign * best_objective, threshold, targeted, steps, queries, time.perf_counter() - started
    )
