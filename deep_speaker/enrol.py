"""Enrolment store: one averaged embedding per name in an SQLite file (standard library).

Every change is one transaction, so a process killed during `enroll` leaves either the old or the new
entry. The store records the identity of the model that made its embeddings (`model_fingerprint`: its
weights, not its file) and refuses any other model. Decisions on these embeddings are the `Verifier`'s.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import RegistryError, SpeakerExistsError, UnknownSpeakerError


def file_digest(path) -> str:
    """Short digest of a file's bytes: the model id of stores written before models had fingerprints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


MAX_NAME_LENGTH = 200
BUSY_TIMEOUT_SECONDS = 10.0  # how long a write waits for another process holding the store
SCHEMA = {"meta", "speakers"}


def check_name(name: str) -> str:
    """A speaker name: 1-200 printable characters, no tabs or line breaks, not only spaces, and no '/' or '\\' (a
    name is also a path segment of the HTTP service: one with a slash could be enrolled there but never removed)."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_NAME_LENGTH
        or not name.isprintable()
        or "/" in name
        or "\\" in name
    ):
        raise RegistryError(
            f"speaker name {name!r}: use 1-{MAX_NAME_LENGTH} printable characters, without '/' or '\\' (and no tabs, line breaks or control characters)"
        )
    return name


def require_store(path) -> Path:
    """`path` if a store exists there, else a `RegistryError` (checked before any model is loaded)."""
    path = Path(path)
    if not path.is_file():
        raise RegistryError(
            f"{path}: no such speaker store; enrol speakers into it first", cli_hint="run `enroll NAME FILES... --store PATH`"
        )
    return path


class SpeakerRegistry:
    """Named speaker embeddings in an SQLite file, tied to one model.

    Writes are single transactions; concurrent writers wait up to `BUSY_TIMEOUT_SECONDS` and a name is
    checked and written in the same transaction, so two enrolments of one new name cannot both succeed.
    A read-only store can still be listed and identified against. A database that is not a speaker store
    is refused without being written to.

    >>> registry = SpeakerRegistry("speakers.db", load_encoder())  # doctest: +SKIP
    >>> registry.enroll("alice", ["a1.wav", "a2.wav"])             # doctest: +SKIP
    >>> Verifier(registry.encoder).identify("who.wav", registry)   # doctest: +SKIP
    """

    def __init__(self, path, encoder=None, read_only: bool | None = None, concurrent: bool = False, create: bool = True):
        """`encoder` None: the store as it is, for listing and removing names, with no model loaded (enrolling and
        scoring against it need its encoder, which is checked against the store).
        `read_only`: open for reading only (default: when the file exists and cannot be written).
        `concurrent`: write-ahead logging, so readers never wait for a writer (one registry per thread; the service).
        `create`: make the store if it does not exist (else that is an error: listing must not leave an empty store)."""
        self.path = Path(path)
        if not create or encoder is None:
            require_store(self.path)
        self.encoder = encoder
        self.model_identity = encoder.fingerprint if encoder is not None else None
        self.read_only = (self.path.exists() and not os.access(self.path, os.W_OK)) if read_only is None else read_only
        with self._sqlite_errors("open"):
            if self.read_only:
                self.connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
            tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and not SCHEMA <= tables:
                self.connection.close()
                raise RegistryError(f"{self.path}: an SQLite database but not a speaker store (tables {sorted(tables)}); left untouched")
            if not tables and encoder is None:
                self.connection.close()
                raise RegistryError(f"{self.path}: an empty database, not a speaker store (enrol a speaker into it first)")
            if not tables:
                self._create()
            if concurrent and not self.read_only:
                self.connection.execute("PRAGMA journal_mode=WAL")
            stored = dict(self.connection.execute("SELECT key, value FROM meta")).get("model_id")
        if encoder is None:
            self.model_identity = stored
        elif (
            stored != self.model_identity
            and encoder.checkpoint is not None
            and stored == file_digest(encoder.checkpoint)
            and not self.read_only
        ):
            with self._sqlite_errors("update"), self.connection:  # a store of version 0.1, keyed by the file's bytes
                self.connection.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (self.model_identity,))
        elif stored != self.model_identity:
            raise RegistryError(
                f"{self.path}: enrolled with model {stored}, but the model in use is {self.model_identity}; "
                "embeddings of different models cannot be compared: use the same model or another store",
                cli_hint="use the same --checkpoint-file or a new --store",
            )

    def _create(self) -> None:
        if self.read_only:
            raise RegistryError(f"{self.path}: an empty read-only file cannot become a speaker store")
        with self.connection:
            self.connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS speakers (name TEXT PRIMARY KEY, embedding BLOB NOT NULL, "
                "num_files INTEGER NOT NULL, enrolled_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
            self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('model_id', ?)", (self.model_identity,))
            self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('embedding_dim', ?)", (str(self.encoder.embedding_dim),))

    @contextmanager
    def _sqlite_errors(self, action: str):
        """SQLite's errors (locked, read-only, disk full, not a database) as one `RegistryError` naming the store."""
        try:
            yield
        except sqlite3.Error as error:
            reason = str(error)
            if "locked" in reason or "busy" in reason:
                reason += f" by another process for more than {BUSY_TIMEOUT_SECONDS:g} s; try again"
            if isinstance(error, sqlite3.DatabaseError) and "not a database" in reason:
                raise RegistryError(f"{self.path}: not a speaker store ({reason})") from error
            raise RegistryError(f"{self.path}: cannot {action} the speaker store ({reason})") from error

    def close(self) -> None:
        self.connection.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, so the `.db` alone holds every enrolment (a copy of it
        without its `-wal` file would otherwise lack the latest)."""
        if not self.read_only:
            with self._sqlite_errors("checkpoint"):
                self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self) -> list[tuple[str, int]]:
        """(name, number of files enrolled) for every speaker, sorted by name."""
        with self._sqlite_errors("read"):
            return list(self.connection.execute("SELECT name, num_files FROM speakers ORDER BY name"))

    def _writable(self) -> None:
        if self.read_only:
            raise RegistryError(f"{self.path}: the store is read-only (it can be listed and identified against, not changed)")

    def enroll(self, name: str, files, replace: bool = False) -> np.ndarray:
        """Average the files' embeddings (each L2-normalised) and store them under `name` in one transaction."""
        check_name(name)
        self._writable()
        files = list(files)
        if not files:
            raise RegistryError(f"enrolling {name!r}: no files given")
        self._require_model("enrol")
        already = SpeakerExistsError(f"{self.path}: {name!r} is already enrolled (replace=True overwrites)", cli_hint="pass --replace")
        with self._sqlite_errors("read"):
            if not replace and self.connection.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone():
                raise already  # before the embedding work; the insert below decides races
        embeddings = self.encoder.embed_many(files)
        mean = embeddings.mean(axis=0)
        mean = (mean / np.linalg.norm(mean)).astype(np.float32)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self._sqlite_errors("write to"), self.connection:
                self.connection.execute(
                    f"{verb} INTO speakers (name, embedding, num_files) VALUES (?, ?, ?)", (name, mean.tobytes(), len(files))
                )
        except RegistryError as error:
            if isinstance(error.__cause__, sqlite3.IntegrityError):
                raise already from None
            raise
        return mean

    def remove(self, name: str) -> None:
        self._writable()
        with self._sqlite_errors("write to"), self.connection:
            removed = self.connection.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount
        if not removed:
            raise UnknownSpeakerError(f"{self.path}: no speaker named {name!r}")

    def _require_model(self, action: str) -> None:
        if self.encoder is None:
            raise RegistryError(
                f"{self.path}: opened without its model; to {action} against it, open it with the encoder of model {self.model_identity}"
            )

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """(names sorted, their embeddings (n, dim)); raises when the store is empty."""
        self._require_model("score")
        with self._sqlite_errors("read"):
            rows = list(self.connection.execute("SELECT name, embedding FROM speakers ORDER BY name"))
        if not rows:
            raise RegistryError(f"{self.path}: no speaker enrolled yet", cli_hint="run `enroll NAME FILES...` first")
        return [name for name, _ in rows], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])

    def embedding(self, name: str) -> np.ndarray:
        self._require_model("score")
        with self._sqlite_errors("read"):
            row = self.connection.execute("SELECT embedding FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownSpeakerError(f"{self.path}: no speaker named {name!r}")
        return np.frombuffer(row[0], dtype=np.float32)
