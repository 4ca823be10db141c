"""Diarization error rate as NIST's md-eval defines it, on a 1 ms grid.

DER = (missed speech + false alarm + speaker confusion) / reference speech, over the scored time: everything
except a `collar` either side of each reference boundary. Overlapped speech is scored: at each instant with
N_ref reference and N_hyp hypothesis speakers, max(0, N_ref - N_hyp) is missed, max(0, N_hyp - N_ref) false
alarm, and min(N_ref, N_hyp) minus the correctly mapped speakers confused. Hypothesis speakers are mapped one
to one to reference speakers so that their overlap in scored time is greatest (Hungarian algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .rttm import Segment

RESOLUTION = 0.001  # seconds per grid cell


@dataclass(frozen=True)
class DiarizationError:
    """Seconds of each error kind, the scored reference speech, and their ratio."""

    missed: float
    false_alarm: float
    confusion: float
    reference: float

    @property
    def rate(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.reference if self.reference else 0.0

    def __str__(self) -> str:
        return (
            f"DER = {100 * self.rate:.2f} % (missed {self.missed:.2f} s, false alarm {self.false_alarm:.2f} s, "
            f"confusion {self.confusion:.2f} s of {self.reference:.2f} s)"
        )


def _cells(seconds: float) -> int:
    return int(round(seconds / RESOLUTION))


def _activity(segments: list[Segment], length: int) -> tuple[list[str], np.ndarray]:
    speakers = sorted({s.speaker for s in segments})
    active = np.zeros((length, len(speakers)), dtype=bool)
    for segment in segments:
        active[_cells(segment.start) : _cells(segment.end), speakers.index(segment.speaker)] = True
    return speakers, active


def diarization_error_rate(reference: list[Segment], hypothesis: list[Segment], collar: float = 0.25) -> DiarizationError:
    """DER of `hypothesis` against `reference` (one recording), `collar` seconds either side of reference boundaries unscored."""
    length = _cells(max([s.end for s in reference + hypothesis], default=0.0)) + 1
    _, ref = _activity(reference, length)
    _, hyp = _activity(hypothesis, length)
    scored = np.ones(length, dtype=bool)
    for segment in reference:
        for boundary in (segment.start, segment.end):
            scored[max(0, _cells(boundary - collar)) : _cells(boundary + collar)] = False
    ref, hyp = ref[scored], hyp[scored]
    correct = 0
    if ref.shape[1] and hyp.shape[1]:
        overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)
        rows, columns = linear_sum_assignment(-overlap)
        correct = int(overlap[rows, columns].sum())
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    return DiarizationError(
        missed=float(np.maximum(n_ref - n_hyp, 0).sum() * RESOLUTION),
        false_alarm=float(np.maximum(n_hyp - n_ref, 0).sum() * RESOLUTION),
        confusion=float((np.minimum(n_ref, n_hyp).sum() - correct) * RESOLUTION),
        reference=float(n_ref.sum() * RESOLUTION),
    )
