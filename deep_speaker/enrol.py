"""Enrolment store: one averaged embedding per name in an SQLite file (standard library).

Every change is one transaction, so a process killed during `enroll` leaves either the old or the new
entry. The store records the identity of the model that made its embeddings (`model_fingerprint`: its
weights, not its file) and refuses any other model. Decisions on these embeddings are the `Verifier`'s.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

from .errors import RegistryError


def file_digest(path) -> str:
    """Short digest of a file's bytes: the model id of stores written before models had fingerprints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class SpeakerRegistry:
    """Named speaker embeddings in an SQLite file, tied to one model.

    >>> registry = SpeakerRegistry("speakers.db", SpeakerEncoder())  # doctest: +SKIP
    >>> registry.enroll("alice", ["a1.wav", "a2.wav"])             # doctest: +SKIP
    >>> Verifier(registry.encoder).identify("who.wav", registry)   # doctest: +SKIP
    """

    def __init__(self, path, encoder):
        self.path = Path(path)
        self.encoder = encoder
        model_identity = encoder.fingerprint
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
        stored = dict(self.connection.execute("SELECT key, value FROM meta"))["model_id"]
        if stored != model_identity and encoder.checkpoint is not None and stored == file_digest(encoder.checkpoint):
            with self.connection:  # a store of version 0.1, keyed by the checkpoint file's bytes: re-key it
                self.connection.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_identity,))
        elif stored != model_identity:
            raise RegistryError(
                f"{self.path}: enrolled with model {stored}, but the model in use is {model_identity}; "
                "embeddings of different models cannot be compared: use the same model or another store",
                cli_hint="use the same --checkpoint_file or a new --store",
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
            raise RegistryError(f"{self.path}: {name!r} is already enrolled (replace=True overwrites)", cli_hint="pass --replace")
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

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """(names sorted, their embeddings (n, dim)); raises when the store is empty."""
        rows = list(self.connection.execute("SELECT name, embedding FROM speakers ORDER BY name"))
        if not rows:
            raise RegistryError(f"{self.path}: no speaker enrolled yet", cli_hint="run `enroll NAME FILES...` first")
        return [name for name, _ in rows], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])

    def embedding(self, name: str) -> np.ndarray:
        row = self.connection.execute("SELECT embedding FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(f"{self.path}: no speaker named {name!r}")
        return np.frombuffer(row[0], dtype=np.float32)
