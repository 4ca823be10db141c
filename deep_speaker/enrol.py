"""Enrolment store and operating points: enrol people, verify a claim, identify who speaks.

`SpeakerRegistry` keeps one averaged embedding per name in an SQLite file (standard library). Every
change is one transaction, so a process killed during `enroll` leaves either the old or the new entry.
The store records the id of the model that made its embeddings and refuses any other model.

Operating points (`Calibration`) live beside a checkpoint as `<checkpoint>.calibration.json`: the EER
threshold and the thresholds for false-accept rates of 1 % and 0.1 % on a development trial list.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .cache import atomic_write_bytes
from .errors import DeepSpeakerError
from .scoring import compute_eer, threshold_at_false_accept_rate

OPERATING_POINTS = ("eer", "far1", "far0.1")
UNKNOWN = "unknown"


class RegistryError(DeepSpeakerError):
    """The enrolment store cannot do what was asked (unknown name, other model, empty store...)."""


def model_id(checkpoint) -> str:
    """A short fingerprint of a checkpoint file's bytes: embeddings of different models never mix."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Calibration:
    """Decision thresholds on cosine scores, from a development trial list."""

    eer: float
    far1: float
    far0_1: float
    eer_percent: float
    trials: str

    @staticmethod
    def path_for(checkpoint) -> Path:
        checkpoint = Path(checkpoint)
        return checkpoint.with_name(checkpoint.name + ".calibration.json")

    @classmethod
    def from_scores(cls, target_scores, nontarget_scores, trials: str = "") -> "Calibration":
        eer, threshold = compute_eer(target_scores, nontarget_scores)
        return cls(
            eer=threshold,
            far1=threshold_at_false_accept_rate(nontarget_scores, 0.01),
            far0_1=threshold_at_false_accept_rate(nontarget_scores, 0.001),
            eer_percent=100 * eer,
            trials=trials,
        )

    @classmethod
    def load(cls, checkpoint) -> "Calibration | None":
        path = cls.path_for(checkpoint)
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def save(self, checkpoint) -> Path:
        path = self.path_for(checkpoint)
        atomic_write_bytes(path, json.dumps(asdict(self), indent=2).encode())
        return path

    def threshold(self, operating_point: str) -> float:
        if operating_point not in OPERATING_POINTS:
            raise RegistryError(f"unknown operating point {operating_point!r}; choose from {OPERATING_POINTS}")
        return {"eer": self.eer, "far1": self.far1, "far0.1": self.far0_1}[operating_point]


def resolve_threshold(checkpoint, operating_point: str = "eer", threshold: float | None = None) -> tuple[float | None, str]:
    """(threshold, how it was chosen): an explicit threshold wins, else the checkpoint's calibrated point.

    Returns (None, reason) when the checkpoint has no calibration and no threshold was given.
    """
    if threshold is not None:
        return threshold, "--threshold"
    calibration = Calibration.load(checkpoint)
    if calibration is None:
        return None, f"no calibration for {Path(checkpoint).name}: run `calibrate` or pass --threshold"
    return calibration.threshold(operating_point), f"operating point {operating_point}"


class SpeakerRegistry:
    """Named speaker embeddings in an SQLite file, tied to one model.

    >>> registry = SpeakerRegistry("speakers.db", SpeakerEncoder())  # doctest: +SKIP
    >>> registry.enroll("alice", ["a1.wav", "a2.wav"])             # doctest: +SKIP
    >>> registry.identify("who.wav", top_k=3)                       # doctest: +SKIP
    [('alice', 0.83), ('bob', 0.12), ('carol', 0.05)]
    """

    def __init__(self, path, encoder, model_identity: str | None = None):
        """`model_identity` defaults to the fingerprint of the encoder's checkpoint file."""
        self.path = Path(path)
        self.encoder = encoder
        if model_identity is None:
            if getattr(encoder, "checkpoint", None) is None:
                raise RegistryError("the encoder was built from an in-memory model: pass model_identity to SpeakerRegistry")
            model_identity = model_id(encoder.checkpoint)
        self.model_identity = model_identity
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = sqlite3.connect(self.path)
            with self.connection:
                self.connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self.connection.execute(
                    "CREATE TABLE IF NOT EXISTS speakers (name TEXT PRIMARY KEY, embedding BLOB NOT NULL, "
                    "num_files INTEGER NOT NULL, enrolled_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('model_id', ?)", (model_identity,))
                self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('embedding_dim', ?)", (str(encoder.embedding_dim),))
        except sqlite3.DatabaseError as error:
            raise RegistryError(f"{self.path}: not a speaker store ({error})") from error
        stored = dict(self.connection.execute("SELECT key, value FROM meta"))
        if stored["model_id"] != model_identity:
            raise RegistryError(
                f"{self.path}: enrolled with model {stored['model_id']}, but the model in use is {model_identity}; "
                "embeddings of different models cannot be compared: use the same --checkpoint_file or a new --store"
            )

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self) -> list[tuple[str, int]]:
        """(name, number of files enrolled) for every speaker, sorted by name."""
        return list(self.connection.execute("SELECT name, num_files FROM speakers ORDER BY name"))

    def enroll(self, name: str, files, replace: bool = False) -> np.ndarray:
        """Average the files' embeddings (each L2-normalised) and store them under `name` in one transaction."""
        files = list(files)
        if not files:
            raise RegistryError(f"enrolling {name!r}: no files given")
        exists = self.connection.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone()
        if exists and not replace:
            raise RegistryError(f"{self.path}: {name!r} is already enrolled; pass --replace to overwrite")
        embeddings = self.encoder.embed_many(files)
        mean = embeddings.mean(axis=0)
        mean = (mean / np.linalg.norm(mean)).astype(np.float32)
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO speakers (name, embedding, num_files) VALUES (?, ?, ?)", (name, mean.tobytes(), len(files))
            )
        return mean

    def remove(self, name: str) -> None:
        with self.connection:
            removed = self.connection.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount
        if not removed:
            raise RegistryError(f"{self.path}: no speaker named {name!r}")

    def _matrix(self) -> tuple[list[str], np.ndarray]:
        rows = list(self.connection.execute("SELECT name, embedding FROM speakers ORDER BY name"))
        if not rows:
            raise RegistryError(f"{self.path}: no speaker enrolled yet; run `enroll NAME FILES...` first")
        return [name for name, _ in rows], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])

    def verify(self, audio, name: str) -> float:
        """Cosine score of a recording against the enrolled `name`."""
        row = self.connection.execute("SELECT embedding FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(f"{self.path}: no speaker named {name!r}")
        return float(np.frombuffer(row[0], dtype=np.float32) @ self.encoder.embed(audio))

    def identify(self, audio, top_k: int = 5) -> list[tuple[str, float]]:
        """The `top_k` enrolled speakers most similar to the recording, best first."""
        names, matrix = self._matrix()
        scores = matrix @ self.encoder.embed(audio)
        order = np.argsort(-scores)[:top_k]
        return [(names[i], float(scores[i])) for i in order]
