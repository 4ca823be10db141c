"""Enrolment store: one averaged embedding per name in an SQLite file (standard library); the same contract in a
shared PostgreSQL database is `postgres_store.PostgresRegistry` (`Registry` is what both keep).

Every change is one transaction, so a process killed during `enroll` leaves either the old or the new
entry. The store records the identity of the model that made its embeddings (`model_fingerprint`: its
weights, not its file) and refuses any other model. Decisions on these embeddings are the `Verifier`'s.

Each change is also numbered in the store's `changes` log, in the same transaction. The index that finds the nearest
speakers (`speaker_index`: exact in memory, or a graph persisted in `<store>.index/` for large stores) records the
number of the last change it holds and replays the later ones before every search, so after a kill at any moment it
can neither miss an enrolment nor keep a removed one; one index per store is shared by a process's registries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .errors import RegistryError, SpeakerExistsError, UnknownSpeakerError
from .speaker_index import GRAPH_FROM, ExactIndex, GraphIndex


def file_digest(path) -> str:
    """Short digest of a file's bytes: the model id of stores written before models had fingerprints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


MAX_NAME_LENGTH = 200
BUSY_TIMEOUT_SECONDS = 10.0  # how long a write waits for another process holding the store
SCHEMA = {"meta", "speakers"}  # what makes a database a speaker store (`changes` is added to older stores on open)
SAVE_GRAPH_EVERY = 1000  # changes replayed into a graph before it is written again


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


DATABASE_SCHEMES = ("postgresql://", "postgres://")  # a store on a PostgreSQL server (`postgres_store`)


def is_database_url(location) -> bool:
    return str(location).startswith(DATABASE_SCHEMES)


def store_name(location) -> str:
    """How messages name a store: its path, or its database URL without the password."""
    if not is_database_url(location):
        return str(location)
    parts = urlsplit(str(location))
    host = f"{parts.hostname or ''}:{parts.port}" if parts.port else parts.hostname or ""
    return urlunsplit((parts.scheme, f"{parts.username}@{host}" if parts.username else host, parts.path, "", ""))


def require_store(path):
    """`path` if a store exists there, else a `RegistryError` (checked before any model is loaded); a database URL
    is checked when it is opened."""
    if is_database_url(path):
        return str(path)
    path = Path(path)
    if not path.is_file():
        raise RegistryError(
            f"{path}: no such speaker store; enrol speakers into it first", cli_hint="run `enroll NAME FILES... --store PATH`"
        )
    return path


@dataclass
class _IndexState:
    """A store's index in this process: the last change it holds, the last one written to disk (graphs), its lock."""

    index: ExactIndex | GraphIndex
    applied: int
    saved: int
    lock: threading.Lock


_INDEXES: dict[tuple[str, str | None], _IndexState] = {}  # (store file, store id) -> its index, shared in the process
_INDEXES_LOCK = threading.Lock()
_LOG = logging.getLogger(__name__)


def _index_rows(index: ExactIndex | GraphIndex, rows: list) -> None:
    """Add the store's (rowid, name, embedding) rows to `index`."""
    if rows:
        index.add(
            np.array([key for key, _, _ in rows]),
            np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows]),
            [name for _, name, _ in rows],
        )


class Registry:
    """What every enrolment store offers and checks the same way, whatever holds it: names checked, embeddings
    validated and L2-normalised, one model per store, nothing enrolled twice without `replace`. A store implements
    `names`, `store_embeddings`, `remove`, `candidates`, `embeddings`, `embedding`, `close` and `_has`."""

    path: Path | str  # where the store is, as messages name it
    encoder = None
    model_identity: str | None = None
    read_only: bool = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Make everything written durable in the store itself (SQLite folds its write-ahead log; a server has)."""

    def _has(self, name: str) -> bool:
        raise NotImplementedError

    def store_embeddings(self, entries, replace: bool = False) -> list[np.ndarray]:
        raise NotImplementedError

    def enroll(self, name: str, files, replace: bool = False) -> np.ndarray:
        """Average the files' embeddings (each L2-normalised) and store them under `name` in one transaction."""
        check_name(name)
        self._writable()
        files = list(files)
        if not files:
            raise RegistryError(f"enrolling {name!r}: no files given")
        self._require_model("enrol")
        if not replace and self._has(name):
            raise self._exists(name)  # before the embedding work; `store_embeddings` decides races
        (stored,) = self.store_embeddings([(name, self.encoder.embed_many(files).mean(axis=0), len(files))], replace)
        return stored

    def _checked_entries(self, entries) -> list[tuple[str, np.ndarray, int]]:
        """(name, unit embedding, number of files) of each entry to store, every one checked first."""
        self._writable()
        self._require_model("enrol")
        rows = []
        for name, embedding, num_files in entries:
            check_name(name)
            vector = np.asarray(embedding, np.float32).reshape(-1)
            if vector.size != self.encoder.embedding_dim or not np.all(np.isfinite(vector)) or not np.any(vector):
                raise RegistryError(f"enrolling {name!r}: an embedding needs {self.encoder.embedding_dim} finite values, not all zero")
            rows.append((name, (vector / np.linalg.norm(vector)).astype(np.float32), int(num_files)))
        return rows

    def _exists(self, name: str) -> SpeakerExistsError:
        return SpeakerExistsError(f"{self.path}: {name!r} is already enrolled (replace=True overwrites)", cli_hint="pass --replace")

    def _unknown(self, name: str) -> UnknownSpeakerError:
        return UnknownSpeakerError(f"{self.path}: no speaker named {name!r}")

    def _empty(self) -> RegistryError:
        return RegistryError(f"{self.path}: no speaker enrolled yet", cli_hint="run `enroll NAME FILES...` first")

    def _writable(self) -> None:
        if self.read_only:
            raise RegistryError(f"{self.path}: the store is read-only (it can be listed and identified against, not changed)")

    def _require_model(self, action: str) -> None:
        if self.encoder is None:
            raise RegistryError(
                f"{self.path}: opened without its model; to {action} against it, open it with the encoder of model {self.model_identity}"
            )

    def _check_model(self, stored: str | None) -> None:
        """Refuse a store enrolled with another model than this registry's encoder."""
        if stored != self.model_identity:
            raise RegistryError(
                f"{self.path}: enrolled with model {stored}, but the model in use is {self.model_identity}; "
                "embeddings of different models cannot be compared: use the same model or another store",
                cli_hint="use the same --checkpoint-file or a new --store",
            )


class SpeakerRegistry(Registry):
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
            elif "changes" not in tables and not self.read_only:
                self._add_change_log()
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
        else:
            self._check_model(stored)

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
        self._add_change_log()

    def _add_change_log(self) -> None:
        """The `changes` log and the store's own id (stores made before the index lack them: added when writable)."""
        with self._sqlite_errors("update"), self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, key INTEGER NOT NULL, op TEXT NOT NULL)"
            )
            self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))

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

    def names(self) -> list[tuple[str, int]]:
        """(name, number of files enrolled) for every speaker, sorted by name."""
        with self._sqlite_errors("read"):
            return list(self.connection.execute("SELECT name, num_files FROM speakers ORDER BY name"))

    def _has(self, name: str) -> bool:
        with self._sqlite_errors("read"):
            return self.connection.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone() is not None

    def store_embeddings(self, entries, replace: bool = False) -> list[np.ndarray]:
        """Store (name, embedding, number of files) entries, each embedding L2-normalised, in one transaction: the
        way to enrol embeddings computed elsewhere (a cluster job, another process). An existing name is refused
        unless `replace`, and then none of the entries is stored. Returns the stored (unit) embeddings."""
        rows = self._checked_entries(entries)
        try:
            with self._sqlite_errors("write to"), self.connection:
                for name, blob, num_files in rows:
                    old = self.connection.execute("SELECT rowid FROM speakers WHERE name = ?", (name,)).fetchone()
                    if old is not None and not replace:
                        raise self._exists(name)  # rolls the whole transaction back
                    if old is not None:
                        self.connection.execute("DELETE FROM speakers WHERE rowid = ?", old)
                        self._log_change(old[0], "remove")
                    key = self.connection.execute(
                        "INSERT INTO speakers (name, embedding, num_files) VALUES (?, ?, ?)", (name, blob.tobytes(), num_files)
                    ).lastrowid
                    self._log_change(key, "add")
        except RegistryError as error:
            if isinstance(error.__cause__, sqlite3.IntegrityError):  # another process enrolled the name meanwhile
                raise self._exists(rows[0][0] if len(rows) == 1 else "one of these names") from None
            raise
        return [vector for _, vector, _ in rows]

    def _log_change(self, key: int, op: str) -> None:
        """Inside a write transaction: number the change for the index."""
        self.connection.execute("INSERT INTO changes (key, op) VALUES (?, ?)", (key, op))

    def remove(self, name: str) -> None:
        self._writable()
        with self._sqlite_errors("write to"), self.connection:
            row = self.connection.execute("SELECT rowid FROM speakers WHERE name = ?", (name,)).fetchone()
            if row is not None:
                self.connection.execute("DELETE FROM speakers WHERE rowid = ?", row)
                self._log_change(row[0], "remove")
        if row is None:
            raise self._unknown(name)

    def candidates(self, query: np.ndarray, count: int) -> tuple[list[str], np.ndarray]:
        """The enrolled speakers worth scoring against the unit embedding `query`, with their embeddings as stored:
        every speaker of a small store, else (`GRAPH_FROM` speakers and more) the graph's nearest, at least `count`."""
        self._require_model("score")
        state = self._synced_index()
        with state.lock:
            if isinstance(state.index, ExactIndex):
                if not len(state.index):
                    raise self._empty()
                return state.index.names, state.index.vectors  # replaced, never changed in place, by later changes
            keys = [int(key) for key in state.index.search(query, count)]
        with self._sqlite_errors("read"):
            rows = {key: (name, blob) for key, name, blob in self._rows(keys)}
        found = [rows[key] for key in keys if key in rows]
        if not found:
            raise self._empty()
        return [name for name, _ in found], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in found])

    def _rows(self, keys: list[int]) -> list[tuple[int, str, bytes]]:
        """The stored (rowid, name, embedding) rows of these row ids (those still there)."""
        return list(
            self.connection.execute(f"SELECT rowid, name, embedding FROM speakers WHERE rowid IN ({','.join('?' * len(keys))})", keys)
        )

    @property
    def _index_folder(self) -> Path:
        return self.path.with_name(f"{self.path.name}.index")

    def _store_id(self) -> str | None:
        with self._sqlite_errors("read"):
            return dict(self.connection.execute("SELECT key, value FROM meta")).get("store_id")

    def _graph_files(self, store_id: str) -> list[tuple[int, Path]]:
        """(last change held, file) of the graphs persisted for this store, newest first."""
        found = [(int(path.stem.rsplit("-", 1)[1]), path) for path in self._index_folder.glob(f"graph-{store_id}-*.usearch")]
        return sorted(found, reverse=True)

    def _built_index(self, store_id: str | None) -> _IndexState:
        """The index of every stored embedding (a persisted graph, brought up to date, where there is one), read in
        one transaction with the number of the last change it holds."""
        dim = int(dict(self.connection.execute("SELECT key, value FROM meta")).get("embedding_dim", self.encoder.embedding_dim))
        with self._sqlite_errors("read"):
            count = self.connection.execute("SELECT COUNT(*) FROM speakers").fetchone()[0]
            if count >= GRAPH_FROM and store_id is not None:
                for applied, path in self._graph_files(store_id):
                    try:
                        return _IndexState(GraphIndex.load(path, dim), applied, applied, threading.Lock())
                    except (ValueError, RuntimeError, OSError) as error:  # damaged: build it again from the store
                        _LOG.warning("%s: %s; rebuilding the speaker index from the store", path, error)
            self.connection.execute("BEGIN")
            try:
                applied = self._last_change()
                index = GraphIndex(dim) if count >= GRAPH_FROM else ExactIndex(dim)
                cursor = self.connection.execute("SELECT rowid, name, embedding FROM speakers")
                while rows := cursor.fetchmany(50_000):
                    _index_rows(index, rows)
            finally:
                self.connection.execute("COMMIT")
        return _IndexState(index, applied, -1, threading.Lock())

    def _last_change(self) -> int:
        try:
            return self.connection.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        except sqlite3.OperationalError:  # an older store opened read-only: no log; its index is built every time
            return -1

    def _synced_index(self) -> _IndexState:
        """This store's index in this process, with every change made since it was built or saved replayed: each key
        a change touched is re-read from the store, so replaying twice, or after a kill, gives the same index."""
        store_id = self._store_id()
        where = (str(self.path.resolve()), store_id)
        with _INDEXES_LOCK:
            state = _INDEXES.get(where)
            if state is None or state.applied < 0:
                state = _INDEXES[where] = self._built_index(store_id)
        with state.lock, self._sqlite_errors("read"):
            if state.applied < 0:  # no change log to replay: built just now from the store itself
                return state
            changes = list(self.connection.execute("SELECT seq, key FROM changes WHERE seq > ?", (state.applied,)))
            touched = sorted({key for _, key in changes})
            if touched:
                last = max(seq for seq, _ in changes)  # what was read, not what has been written since
                rows = self._rows(touched)
                state.index.remove(touched)
                _index_rows(state.index, rows)
                state.applied = max(state.applied, last)
            if isinstance(state.index, ExactIndex) == (len(state.index) >= GRAPH_FROM):  # grown past, or shrunk below
                rebuilt = self._built_index(store_id)  # the next search replays what it lacks
                state.index, state.applied, state.saved = rebuilt.index, rebuilt.applied, rebuilt.saved
            if isinstance(state.index, GraphIndex) and state.applied - state.saved >= SAVE_GRAPH_EVERY and not self.read_only:
                self._save_graph(state, store_id)
        return state

    def _save_graph(self, state: _IndexState, store_id: str) -> None:
        """Persist the graph under the last change it holds, then drop the older files (each write is a rename)."""
        state.index.save(self._index_folder / f"graph-{store_id}-{state.applied}.usearch")  # atomic_replace makes the folder
        state.saved = state.applied
        for applied, path in self._graph_files(store_id):
            if applied < state.applied:
                path.unlink(missing_ok=True)

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """(names sorted, their embeddings (n, dim)); raises when the store is empty."""
        self._require_model("score")
        with self._sqlite_errors("read"):
            rows = list(self.connection.execute("SELECT name, embedding FROM speakers ORDER BY name"))
        if not rows:
            raise self._empty()
        return [name for name, _ in rows], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])

    def embedding(self, name: str) -> np.ndarray:
        self._require_model("score")
        with self._sqlite_errors("read"):
            row = self.connection.execute("SELECT embedding FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        return np.frombuffer(row[0], dtype=np.float32)
