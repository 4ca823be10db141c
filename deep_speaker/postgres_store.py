"""Enrolment store in PostgreSQL with pgvector: one database that many service processes and machines share.

The same contract and rules as the SQLite store (`enrol.Registry`): one model per store, a name checked and written in
one transaction (two processes enrolling one new name cannot both succeed), embeddings L2-normalised, decisions the
`Verifier`'s. The index is in the database: pgvector's HNSW index over the embeddings (cosine distance) proposes the
candidates of stores of `GRAPH_FROM` speakers and more; smaller stores are ranked exactly (a sequential scan). Either
way the `Verifier` re-scores the candidates, so decisions and thresholds are those of every other store. An enrolment
is visible to every process the moment it commits; there is nothing to replay.

    postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE     (`--store`, the service's store, `assembly.open_registry`)
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .enrol import Registry, store_name
from .errors import RegistryError
from .speaker_index import GRAPH_CANDIDATES, GRAPH_FROM, GRAPH_SEARCH_DEPTH

CONNECT_TIMEOUT_SECONDS = 10
SCHEMA_LOCK = 0x5E_A4E5  # the advisory lock under which a store's tables are created (two processes may start at once)


def _vector(embedding: np.ndarray) -> str:
    """pgvector's text form of a float32 vector (each value exactly: a float32 is exactly a double)."""
    return "[" + ",".join(map(repr, np.asarray(embedding, np.float32).tolist())) + "]"


STORED = "vector_send(embedding)"  # pgvector's binary form of a stored vector: dimension, reserved, big-endian float32s


def _stored(binary: bytes) -> np.ndarray:
    """The float32 vector of `vector_send`'s bytes (the 4-byte header skipped)."""
    return np.frombuffer(binary, ">f4", offset=4).astype(np.float32)


class PostgresRegistry(Registry):
    """Named speaker embeddings in a PostgreSQL database with pgvector, tied to one model (see the module docstring).
    `encoder` None: list and remove only. `create`: make the store's tables where the database has none."""

    def __init__(self, url: str, encoder=None, read_only: bool = False, create: bool = True):
        import psycopg

        self.path = store_name(url)
        self.encoder = encoder
        self.model_identity = encoder.fingerprint if encoder is not None else None
        self.read_only = read_only
        with self._database_errors("open"):
            self.connection = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            tables = {row[0] for row in self.connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            if not {"meta", "speakers"} <= tables:
                refusal = (
                    "a table named meta or speakers that is not a speaker store; left untouched"
                    if tables & {"meta", "speakers"}
                    else "no speaker store in this database; enrol a speaker into it first"
                    if not create or encoder is None or read_only
                    else None
                )
                if refusal is not None:
                    self.connection.close()
                    raise RegistryError(f"{self.path}: {refusal}")
                self._create()
            stored = dict(self.connection.execute("SELECT key, value FROM meta").fetchall())
            if read_only:
                self.connection.execute("SET default_transaction_read_only = on")
            self._search_depth = max(GRAPH_SEARCH_DEPTH, GRAPH_CANDIDATES)  # candidates the HNSW search explores
            self.connection.execute(f"SET hnsw.ef_search = {self._search_depth}")
        if encoder is None:
            self.model_identity = stored.get("model_id")
        else:
            self._check_model(stored.get("model_id"))

    @contextmanager
    def _database_errors(self, action: str):
        """The driver's errors (unreachable server, refused login, missing pgvector) as one `RegistryError`."""
        import psycopg

        try:
            yield
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, psycopg.errors.UniqueViolation):
                raise
            raise RegistryError(f"{self.path}: cannot {action} the speaker store ({reason})") from error

    def _create(self) -> None:
        """The store's tables and HNSW index, once, whichever process gets there first."""
        with self.connection.transaction():
            self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            try:
                self.connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except Exception as error:
                raise RegistryError(f"{self.path}: the database lacks pgvector ({error}); CREATE EXTENSION vector as its owner") from None
            self.connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.connection.execute(
                f"CREATE TABLE IF NOT EXISTS speakers (id BIGSERIAL PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
                f"embedding vector({int(self.encoder.embedding_dim)}) NOT NULL, num_files INTEGER NOT NULL, "
                "enrolled_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            self.connection.execute("CREATE INDEX IF NOT EXISTS speakers_nearest ON speakers USING hnsw (embedding vector_cosine_ops)")
            for key, value in (("model_id", self.model_identity), ("embedding_dim", str(self.encoder.embedding_dim))):
                self.connection.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value))

    def close(self) -> None:
        self.connection.close()

    def names(self) -> list[tuple[str, int]]:
        """(name, number of files enrolled) for every speaker, sorted by name."""
        with self._database_errors("read"):
            return [tuple(row) for row in self.connection.execute('SELECT name, num_files FROM speakers ORDER BY name COLLATE "C"')]

    def _has(self, name: str) -> bool:
        with self._database_errors("read"):
            return self.connection.execute("SELECT 1 FROM speakers WHERE name = %s", (name,)).fetchone() is not None

    def store_embeddings(self, entries, replace: bool = False) -> list[np.ndarray]:
        """Store (name, embedding, number of files) entries in one transaction (see `enrol.SpeakerRegistry`)."""
        import psycopg

        rows = self._checked_entries(entries)
        try:
            with self._database_errors("write to"), self.connection.transaction(), self.connection.cursor() as cursor:
                if replace:
                    cursor.executemany("DELETE FROM speakers WHERE name = %s", [(name,) for name, _, _ in rows])
                cursor.executemany(
                    "INSERT INTO speakers (name, embedding, num_files) VALUES (%s, %s::vector, %s)",
                    [(name, _vector(vector), num_files) for name, vector, num_files in rows],
                )
        except psycopg.errors.UniqueViolation:  # enrolled before, or by another process meanwhile: nothing was stored
            raise self._exists(rows[0][0] if len(rows) == 1 else "one of these names") from None
        return [vector for _, vector, _ in rows]

    def remove(self, name: str) -> None:
        self._writable()
        with self._database_errors("write to"):
            removed = self.connection.execute("DELETE FROM speakers WHERE name = %s", (name,)).rowcount
        if not removed:
            raise self._unknown(name)

    def candidates(self, query: np.ndarray, count: int) -> tuple[list[str], np.ndarray]:
        """The enrolled speakers nearest the unit embedding `query` by cosine, at least `count` of them (and
        `GRAPH_CANDIDATES`): ranked exactly in a store of fewer than `GRAPH_FROM` speakers, by the HNSW index in a
        larger one; with their embeddings as stored, for the `Verifier` to score."""
        self._require_model("score")
        wanted = max(count, GRAPH_CANDIDATES)
        with self._database_errors("read"):
            head = self.connection.execute(f"SELECT count(*) FROM (SELECT 1 FROM speakers LIMIT {GRAPH_FROM}) AS head").fetchone()[0]
            if head < GRAPH_FROM:  # the function form, which no index serves: every row scored, the exact ranking
                order = "cosine_distance(embedding, %s::vector)"
            else:  # the operator the HNSW index serves; it returns at most hnsw.ef_search rows
                order = "embedding <=> %s::vector"
                if wanted > self._search_depth:
                    self._search_depth = wanted
                    self.connection.execute(f"SET hnsw.ef_search = {wanted}")
            rows = self.connection.execute(  # the vectors sent for the nearest only, not for every row before the sort
                f"SELECT name, {STORED} FROM (SELECT name, embedding, {order} AS distance FROM speakers ORDER BY distance LIMIT %s) "
                "AS nearest ORDER BY distance",
                (_vector(query), wanted),
            ).fetchall()
        if not rows:
            raise self._empty()
        return [name for name, _ in rows], np.stack([_stored(vector) for _, vector in rows])

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """(names sorted, their embeddings (n, dim)); raises when the store is empty."""
        self._require_model("score")
        with self._database_errors("read"):
            rows = self.connection.execute(f'SELECT name, {STORED} FROM speakers ORDER BY name COLLATE "C"').fetchall()
        if not rows:
            raise self._empty()
        return [name for name, _ in rows], np.stack([_stored(vector) for _, vector in rows])

    def embedding(self, name: str) -> np.ndarray:
        self._require_model("score")
        with self._database_errors("read"):
            row = self.connection.execute(f"SELECT {STORED} FROM speakers WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        return _stored(row[0])
