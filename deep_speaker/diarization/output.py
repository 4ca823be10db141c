"""Diarization results as JSON and as a timeline picture."""

from __future__ import annotations

import json
from dataclasses import asdict
from io import BytesIO
from pathlib import Path

from ..fileio import atomic_write_bytes
from .rttm import Segment


def segments_json(segments: list[Segment]) -> str:
    """Segments as a JSON list of {start, end, speaker, recording}."""
    return json.dumps([asdict(s) for s in segments], indent=1)


def write_json(path, segments: list[Segment]) -> Path:
    """`segments_json`, atomically."""
    atomic_write_bytes(Path(path), segments_json(segments).encode())
    return Path(path)


def plot_timeline(path, segments: list[Segment], reference: list[Segment] | None = None) -> Path:
    """A PNG with one row per speaker and a bar per turn (and the reference's turns above, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("", s) for s in segments] + [("reference: ", s) for s in reference or []]
    names = sorted({prefix + s.speaker for prefix, s in rows})
    figure, axes = plt.subplots(figsize=(10, 0.5 + 0.4 * max(1, len(names))))
    colours = plt.get_cmap("tab10")
    for prefix, segment in rows:
        row = names.index(prefix + segment.speaker)
        axes.broken_barh([(segment.start, segment.duration)], (row - 0.4, 0.8), color=colours(row % 10))
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("time (s)")
    axes.set_xlim(0, max([s.end for _, s in rows], default=1.0))
    return save_figure(figure, path)


def save_figure(figure, path) -> Path:
    """A matplotlib figure as a PNG at `path`, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
