"""Diarization error rate as NIST's md-eval defines it, and the Jaccard error rate of DIHARD, on a 1 ms grid.

DER = (missed speech + false alarm + speaker confusion) / reference speech, over the scored time: the UEM's regions
(everything, without one) except a `collar` either side of each reference boundary and, with `skip_overlap`, the
time where two or more reference speakers talk. Overlapped speech is otherwise scored: at each instant with
N_ref reference and N_hyp hypothesis speakers, max(0, N_ref - N_hyp) is missed, max(0, N_hyp - N_ref) false
alarm, and min(N_ref, N_hyp) minus the correctly mapped speakers confused. Hypothesis speakers are mapped one
to one to reference speakers so that their overlap in scored time is greatest (Hungarian algorithm).
JER (Ryant et al., DIHARD II) is, under the same mapping, the mean over reference speakers of 1 - |R & H| / |R | H|
(1 for a reference speaker mapped to nobody): every speaker counts the same, however long they talk.
(pyannote.metrics takes `collar` as the whole width of the unscored zone: its collar 0.5 is md-eval's 0.25.)
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass

import numpy as np

from .rttm import Segment

RESOLUTION = 0.001  # seconds per grid cell


@dataclass(frozen=True)
class DiarizationError:
    """Seconds of each error kind, the scored reference speech, and their ratio; the speakers' summed Jaccard errors.
    Errors of several recordings add up (`+`), as md-eval and pyannote.metrics total them."""

    missed: float
    false_alarm: float
    confusion: float
    reference: float
    jaccard_errors: float = 0.0  # sum over reference speakers of 1 - Jaccard index
    speakers: int = 0  # reference speakers with scored speech

    @property
    def rate(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.reference if self.reference else 0.0

    @property
    def jer(self) -> float:
        return self.jaccard_errors / self.speakers if self.speakers else 0.0

    def __add__(self, other: DiarizationError) -> DiarizationError:
        return DiarizationError(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def summary(self) -> dict:
        return {"der": self.rate, "jer": self.jer, **asdict(self)}

    def __str__(self) -> str:
        return (
            f"DER = {100 * self.rate:.2f} % (missed {self.missed:.2f} s, false alarm {self.false_alarm:.2f} s, "
            f"confusion {self.confusion:.2f} s of {self.reference:.2f} s), JER = {100 * self.jer:.2f} % ({self.speakers} speakers)"
        )


def _cells(seconds: float) -> int:
    return int(round(seconds / RESOLUTION))


def _activity(segments: list[Segment], length: int) -> tuple[list[str], np.ndarray]:
    speakers = sorted({s.speaker for s in segments})
    active = np.zeros((length, len(speakers)), dtype=bool)
    for segment in segments:
        active[_cells(segment.start) : _cells(segment.end), speakers.index(segment.speaker)] = True
    return speakers, active


def diarization_error_rate(
    reference: list[Segment],
    hypothesis: list[Segment],
    collar: float = 0.25,
    skip_overlap: bool = False,
    uem: list[tuple[float, float]] | None = None,
) -> DiarizationError:
    """DER and JER of `hypothesis` against `reference` (one recording): `collar` seconds either side of reference
    boundaries unscored, overlapped reference speech unscored with `skip_overlap`, and only the `uem` regions
    ((start, end) seconds) scored when given."""
    if not 0 <= collar <= 10:  # NaN fails too
        raise ValueError(f"collar must be 0-10 s, got {collar}")
    ends = [s.end for s in reference + hypothesis] + [end for _, end in uem or []]
    length = _cells(max(ends, default=0.0)) + 1
    _, ref = _activity(reference, length)
    _, hyp = _activity(hypothesis, length)
    scored = np.ones(length, dtype=bool)
    if uem is not None:
        scored[:] = False
        for start, end in uem:
            scored[_cells(start) : _cells(end)] = True
    for segment in reference:
        for boundary in (segment.start, segment.end):
            scored[max(0, _cells(boundary - collar)) : _cells(boundary + collar)] = False
    if skip_overlap:
        scored &= ref.sum(axis=1) < 2
    ref, hyp = ref[scored], hyp[scored]
    correct, jaccard_errors = 0, 0.0
    talking = ref.sum(axis=0) > 0  # reference speakers with scored speech
    mapping = {}
    if ref.shape[1] and hyp.shape[1]:
        from scipy.optimize import linear_sum_assignment  # here: the command line starts without SciPy

        overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)
        rows, columns = linear_sum_assignment(-overlap)
        correct = int(overlap[rows, columns].sum())
        mapping = {int(r): int(c) for r, c in zip(rows, columns) if overlap[r, c] > 0}
    for speaker in np.flatnonzero(talking):
        if speaker in mapping:
            both, either = ref[:, speaker] & hyp[:, mapping[speaker]], ref[:, speaker] | hyp[:, mapping[speaker]]
            jaccard_errors += 1.0 - both.sum() / either.sum()
        else:
            jaccard_errors += 1.0
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    return DiarizationError(
        missed=float(np.maximum(n_ref - n_hyp, 0).sum() * RESOLUTION),
        false_alarm=float(np.maximum(n_hyp - n_ref, 0).sum() * RESOLUTION),
        confusion=float((np.minimum(n_ref, n_hyp).sum() - correct) * RESOLUTION),
        reference=float(n_ref.sum() * RESOLUTION),
        jaccard_errors=float(jaccard_errors),
        speakers=int(talking.sum()),
    )


def score_recordings(
    reference: list[Segment], hypothesis: list[Segment], collar: float = 0.25, skip_overlap: bool = False, uem: dict | None = None
) -> dict[str, DiarizationError]:
    """DER and JER per recording of the reference (a recording the hypothesis lacks is all missed; with a UEM, the
    recordings it lists, each in its regions)."""
    recordings = sorted({s.recording for s in reference} | set(uem or {}))
    return {
        name: diarization_error_rate(
            [s for s in reference if s.recording == name],
            [s for s in hypothesis if s.recording == name],
            collar,
            skip_overlap,
            None if uem is None else uem.get(name, []),
        )
        for name in recordings
    }
