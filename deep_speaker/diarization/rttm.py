"""RTTM, the NIST rich-transcription format diarization tools exchange:
`SPEAKER <file> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>` per turn, times in seconds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeepSpeakerError
from ..fileio import atomic_write_bytes


class RTTMError(DeepSpeakerError):
    """An RTTM file that cannot be read."""


@dataclass(frozen=True)
class Segment:
    """One speaker turn of a recording: [start, end) in seconds."""

    start: float
    end: float
    speaker: str
    recording: str = "recording"

    @property
    def duration(self) -> float:
        return self.end - self.start


def rttm_field(text: str) -> str:
    """`text` as one RTTM field: fields are separated by whitespace, so each run of it becomes "_"."""
    return re.sub(r"\s+", "_", text.strip()) or "_"


def rttm_text(segments: list[Segment]) -> str:
    """`segments` (sorted by recording and start) as RTTM lines (whitespace in names as "_": `rttm_field`)."""
    return "".join(
        f"SPEAKER {rttm_field(s.recording)} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {rttm_field(s.speaker)} <NA> <NA>\n"
        for s in sorted(segments, key=lambda s: (s.recording, s.start, s.end, s.speaker))
    )


def write_rttm(path, segments: list[Segment]) -> Path:
    """Write `segments` as RTTM, atomically."""
    atomic_write_bytes(Path(path), rttm_text(segments).encode())
    return Path(path)


def read_rttm(path) -> list[Segment]:
    """The SPEAKER lines of an RTTM file as segments; a malformed line is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RTTMError(f"{path}: cannot read RTTM ({error})") from error
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            if len(fields) < 8:
                raise ValueError(f"{len(fields)} fields, expected 10")
            start, duration = float(fields[3]), float(fields[4])
            if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration < 0:
                raise ValueError("start and duration must be finite and non-negative")
        except ValueError as error:
            raise RTTMError(f"{path}:{number}: not an RTTM SPEAKER line ({error}): {line!r}") from None
        segments.append(Segment(start, start + duration, fields[7], fields[1]))
    return segments


def read_uem(path) -> dict[str, list[tuple[float, float]]]:
    """A UEM file (`<recording> <channel> <start> <end>` per line: the regions to score) as {recording: regions}."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RTTMError(f"{path}: cannot read UEM ({error})") from error
    regions: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";"):
            continue
        try:
            if len(fields) != 4:
                raise ValueError(f"{len(fields)} fields, expected 4")
            start, end = float(fields[2]), float(fields[3])
            if not (math.isfinite(start) and math.isfinite(end)) or not 0 <= start <= end:
                raise ValueError("start and end must be finite with 0 <= start <= end")
        except ValueError as error:
            raise RTTMError(f"{path}:{number}: not a UEM line ({error}): {line!r}") from None
        regions.setdefault(fields[0], []).append((start, end))
    return regions
