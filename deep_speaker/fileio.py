"""Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new one, never half."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np


def toolkit_home() -> Path:
    """Where the toolkit keeps what belongs to a model rather than a file (calibrations, fitted back ends):
    `$DEEP_SPEAKER_HOME`, default `~/.deep_speaker`."""
    return Path(os.environ.get("DEEP_SPEAKER_HOME", Path.home() / ".deep_speaker"))


def _default_file_mode() -> int:
    """0o666 minus the process umask: what a plain open() would give (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_replace(path, write, suffix: str = ".tmp") -> None:
    """Call `write(temporary_path)`, then rename the result onto `path`: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync, and an atomic rename."""

    def write(temporary):
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())

    atomic_replace(path, write)


def atomic_save_npy(path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(Path(path), buffer.getvalue())


def atomic_write_csv(path, header, rows) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(Path(path), text.getvalue().encode())
