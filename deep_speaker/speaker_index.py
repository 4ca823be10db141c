"""Nearest enrolled speakers, fast: what `SpeakerRegistry.candidates` searches before the exact scores.

Two kinds, one interface (`add`, `remove`, `search`, keyed by the store's row ids):
- `ExactIndex`: the embeddings in one matrix, every query scored against all of them (small stores: exact, and at
  10^4 speakers well under 10 ms);
- `GraphIndex`: an HNSW graph (usearch: measured against FAISS in `benchmarks/identify_scale.py`) for stores of
  `GRAPH_FROM` speakers and more, persisted beside the store under the number of the last change it holds, so a
  process opens it in seconds and replays only the changes made since.
Either only proposes candidates: the registry re-reads their embeddings from the store and the `Verifier` scores
them exactly, so decisions and thresholds do not depend on the index.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import atomic_replace

GRAPH_FROM = 20_000  # speakers from which a store is searched through the graph
GRAPH_CANDIDATES = 64  # graph candidates re-scored exactly (at least top_k)
GRAPH_SEARCH_DEPTH = 128  # usearch's expansion_search: candidates explored per query (recall against speed)
GRAPH_BUILD_DEPTH = 64  # usearch's expansion_add: candidates explored per insertion (build speed against graph quality)


class ExactIndex:
    """Every embedding in memory with its name, searched by brute force (cosine: the embeddings are unit vectors)."""

    def __init__(self, dim: int):
        self.keys = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)
        self.names: list[str] = []
        self._position: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._position)

    def add(self, keys: np.ndarray, vectors: np.ndarray, names=None) -> None:
        self.remove(keys)
        start = self.keys.size
        self.keys = np.concatenate([self.keys, np.asarray(keys, np.int64)])
        self.vectors = np.concatenate([self.vectors, np.asarray(vectors, np.float32)])
        self.names = self.names + (list(names) if names is not None else [""] * len(keys))  # a new list: readers keep theirs
        self._position.update((int(key), start + i) for i, key in enumerate(keys))

    def remove(self, keys) -> None:
        gone = [self._position.pop(int(key)) for key in keys if int(key) in self._position]
        if gone:
            kept = np.ones(self.keys.size, bool)
            kept[gone] = False
            self.keys, self.vectors = self.keys[kept], self.vectors[kept]
            self.names = [name for name, keep in zip(self.names, kept) if keep]
            self._position = {int(key): i for i, key in enumerate(self.keys)}

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """The keys of the `count` embeddings nearest `query`, best first."""
        scores = self.vectors @ np.asarray(query, np.float32)
        count = min(count, scores.size)
        best = np.argpartition(-scores, count - 1)[:count] if count < scores.size else np.arange(scores.size)
        return self.keys[best[np.argsort(-scores[best])]]


class GraphIndex:
    """An HNSW graph of the embeddings (usearch, inner product on unit vectors), persisted atomically. It keeps them
    as int8, 4x smaller and 6x faster to build than float32 (448 dimensions, 2 cores): it only proposes candidates,
    which are re-scored from the float32 embeddings of the store."""

    def __init__(self, dim: int, index=None):
        from usearch.index import Index

        self.index = index if index is not None else Index(ndim=dim, metric="ip", dtype="i8", expansion_add=GRAPH_BUILD_DEPTH)
        self.index.expansion_search = GRAPH_SEARCH_DEPTH

    def __len__(self) -> int:
        return len(self.index)

    def add(self, keys: np.ndarray, vectors: np.ndarray, names=None) -> None:  # names live in the store
        self.remove(keys)  # a replayed change adds a key again: idempotent
        self.index.add(np.asarray(keys, np.uint64), np.asarray(vectors, np.float32), threads=os.cpu_count() or 1)

    def remove(self, keys) -> None:
        present = [int(key) for key in keys if int(key) in self.index]
        if present:
            self.index.remove(np.asarray(present, np.uint64))

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        found = self.index.search(np.asarray(query, np.float32), max(count, GRAPH_CANDIDATES))
        return np.asarray(found.keys, np.int64)

    def save(self, path: Path) -> None:
        """Write the graph to `path` atomically."""
        atomic_replace(path, lambda temporary: self.index.save(str(temporary)))

    @classmethod
    def load(cls, path: Path, dim: int) -> GraphIndex:
        from usearch.index import Index

        index = Index.restore(str(path))
        if index is None or index.ndim != dim:
            raise ValueError(f"{path}: not a graph of {dim}-dimensional embeddings")
        return cls(dim, index)
