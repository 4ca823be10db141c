"""Diarization ("who spoke when"): speaker turns as RTTM, and the diarization error rate that scores them."""

from .der import DiarizationError, diarization_error_rate, score_recordings
from .rttm import Segment, read_rttm, read_uem, rttm_text, write_rttm

__all__ = ["DiarizationError", "Segment", "diarization_error_rate", "read_rttm", "read_uem", "rttm_text", "score_recordings", "write_rttm"]
