"""Decisions: scores become "same speaker", "different speakers", a name or "unknown".

`Verifier` is the one place that decides, for the command line, the Python API and the HTTP service
alike: it scores through a `Scorer`, compares with a threshold (an explicit one, or an operating point
of the model's calibration, found by the model's fingerprint), and can consult a spoof gate first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import Recording
from .errors import CalibrationError, ConfigError
from .scoring import CosineScorer, Scorer
from .scoring.calibration import OPERATING_POINTS, Calibration, find_calibration, probability

UNKNOWN = "unknown"
SpoofGate = Callable[[object], "str | None"]  # recording -> None if genuine, else the reason to reject it


@dataclass(frozen=True)
class Decision:
    """A verification decision: `accepted` is None when no threshold is available."""

    score: float
    threshold: float | None
    source: str
    accepted: bool | None
    reason: str = ""
    llr: float | None = None  # calibrated log-likelihood ratio, when the calibration has one

    @property
    def probability(self) -> float | None:
        """P(same speaker) at even prior odds, from the calibrated LLR."""
        return None if self.llr is None else probability(self.llr)

    @property
    def verdict(self) -> str:
        """In words: "same speaker", "different speakers", "rejected" (the spoof gate) or "none" (no threshold)."""
        if self.reason:
            return "rejected"
        if self.accepted is None:
            return "none"
        return "same speaker" if self.accepted else "different speakers"

    def as_json(self, operating_point: str) -> dict:
        """The decision as plain data (`verify --json`, the service's /verify)."""
        return {**asdict(self), "probability": self.probability, "decision": self.verdict, "operating_point": operating_point}

    def __str__(self) -> str:
        score = f"score = {self.score:.4f}"
        if self.llr is not None:
            score += f"  LLR = {self.llr:+.2f} (P(same) = {self.probability:.3f} at prior 0.5)"
        if self.reason:
            return f"{score}  decision: {self.verdict} ({self.reason})"
        if self.threshold is None:
            return f"{score}  decision: {self.verdict} ({self.source})"
        return f"{score}  threshold = {self.threshold:.4f} ({self.source})  decision: {self.verdict}"


@dataclass(frozen=True)
class Identification:
    """Enrolled speakers ranked by score, and who it is: the best name, or `UNKNOWN` below the threshold."""

    ranked: list[tuple[str, float]]
    speaker: str
    threshold: float | None
    source: str
    reason: str = ""

    def as_json(self) -> dict:
        """The ranking and the answer as plain data (`identify --json`, the service's /identify)."""
        return {
            "speaker": self.speaker,
            "ranked": [{"name": name, "score": score} for name, score in self.ranked],
            "threshold": self.threshold,
            "source": self.source,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        lines = [f"{rank}. {name}\t{score:.4f}" for rank, (name, score) in enumerate(self.ranked, start=1)]
        if self.reason:
            lines.append(f"speaker: {UNKNOWN} (rejected: {self.reason})")
        elif self.threshold is None:
            lines.append(f"speaker: {self.speaker} ({self.source})")
        else:
            lines.append(f"speaker: {self.speaker} (threshold {self.threshold:.4f}, {self.source})")
        return "\n".join(lines)


def check_top_k(top_k) -> int:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"top_k must be a whole number of at least 1, got {top_k!r}")
    return top_k


class Verifier:
    """Turns scores into decisions for one encoder.

    >>> verifier = Verifier(load_encoder(), operating_point="far1")     # doctest: +SKIP
    >>> print(verifier.verify("a.wav", "b.wav"))                        # doctest: +SKIP
    score = 0.8751  LLR = +11.83 (P(same) = 1.000 at prior 0.5)  threshold = 0.5995 (operating point far1, calibrated on dev_trials.txt)  decision: same speaker
    """

    def __init__(
        self,
        encoder,
        scorer: Scorer | None = None,
        operating_point: str = "far1",
        threshold: float | None = None,
        calibration: Calibration | None = None,
        spoof_gate: SpoofGate | None = None,
    ):
        if operating_point not in OPERATING_POINTS:
            raise CalibrationError(f"unknown operating point {operating_point!r}; choose from {OPERATING_POINTS}")
        self.scorer = scorer or CosineScorer()
        if threshold is not None and not math.isfinite(threshold):
            raise CalibrationError(f"a threshold must be a finite number, got {threshold!r}")
        bounds = getattr(self.scorer, "score_range", None)
        if threshold is not None and bounds and not bounds[0] - 0.01 <= threshold <= bounds[1] + 0.01:
            raise CalibrationError(f"threshold {threshold!r} is outside the {self.scorer.name} score range {bounds[0]:g} to {bounds[1]:g}")
        self.encoder = encoder
        self.operating_point = operating_point
        self.explicit_threshold = threshold
        self.calibration = calibration or find_calibration(encoder.fingerprint, encoder.checkpoint, self.scorer.name)
        self.spoof_gate = spoof_gate

    def threshold(self) -> tuple[float | None, str]:
        """(threshold, how it was chosen): an explicit threshold wins, else the calibrated operating point."""
        if self.explicit_threshold is not None:
            return self.explicit_threshold, "threshold given"
        if self.calibration is None:
            return (
                None,
                f"model {self.encoder.fingerprint} is not calibrated for {self.scorer.name} scores: calibrate it or give a threshold",
            )
        fitted_on = f", calibrated on {Path(self.calibration.trials).name}" if self.calibration.trials else ""
        return self.calibration.threshold(self.operating_point), f"operating point {self.operating_point}{fitted_on}"

    def decide(self, score: float) -> Decision:
        threshold, source = self.threshold()
        llr = self.calibration.llr(score) if self.calibration is not None else None
        return Decision(score, threshold, source, None if threshold is None else bool(score >= threshold), llr=llr)

    def _shared(self, *recordings) -> tuple:
        """With a spoof gate, each recording decoded once (`Recording`) for the encoder and the gate alike."""
        return tuple(map(Recording.of, recordings)) if self.spoof_gate is not None else recordings

    def _spoofed(self, *recordings) -> str:
        if self.spoof_gate is None:
            return ""
        return next((reason for reason in map(self.spoof_gate, recordings) if reason), "")

    def verify(self, recording_a, recording_b) -> Decision:
        """Are two recordings (paths, 16 kHz waveforms or `Recording`s) the same speaker?"""
        recording_a, recording_b = self._shared(recording_a, recording_b)
        score = self.scorer.score(self.encoder.embed(recording_a), self.encoder.embed(recording_b))
        return self._with_gate(self.decide(score), recording_a, recording_b)

    def verify_enrolled(self, recording, name: str, registry) -> Decision:
        """Is `recording` the enrolled speaker `name`?"""
        (recording,) = self._shared(recording)
        score = self.scorer.score(registry.embedding(name), self.encoder.embed(recording))
        return self._with_gate(self.decide(score), recording)

    def _with_gate(self, decision: Decision, *recordings) -> Decision:
        reason = self._spoofed(*recordings)
        if not reason:
            return decision
        return Decision(decision.score, decision.threshold, decision.source, False, reason, decision.llr)

    def identify(self, recording, registry, top_k: int = 5) -> Identification:
        """Who of the enrolled speakers is this? Ranked names, and `UNKNOWN` when the best is below the threshold."""
        check_top_k(top_k)
        (recording,) = self._shared(recording)
        query = self.encoder.embed(recording)
        names, matrix = registry.candidates(query / np.linalg.norm(query), top_k)
        scores = self.scorer.score_matrix(matrix, query[None])[:, 0]
        order = scores.argsort()[::-1][:top_k]
        ranked = [(names[i], float(scores[i])) for i in order]
        threshold, source = self.threshold()
        best_name, best_score = ranked[0]
        reason = self._spoofed(recording)
        speaker = UNKNOWN if reason or (threshold is not None and best_score < threshold) else best_name
        return Identification(ranked, speaker, threshold, source, reason)
