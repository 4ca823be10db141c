"""Diarization ("who spoke when"): speaker turns as RTTM, the diarization error rate that scores them, and the
pipeline (`Diarizer`, `DiarizationConfig`: imported on first use, as they bring NumPy-heavy clustering and the
model code; `deep_speaker.assembly.load_diarizer` builds a ready diarizer)."""

from .der import DiarizationError, diarization_error_rate, score_recordings
from .rttm import Segment, read_rttm, read_uem, rttm_text, write_rttm

_PIPELINE = ("DiarizationConfig", "Diarizer")


def __getattr__(name):
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'deep_speaker.diarization' has no attribute {name!r}")


__all__ = [
    *_PIPELINE,
    "DiarizationError",
    "Segment",
    "diarization_error_rate",
    "read_rttm",
    "read_uem",
    "rttm_text",
    "score_recordings",
    "write_rttm",
]
