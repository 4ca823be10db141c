"""Score back ends: the one place that compares embeddings.

A `Scorer` turns enrolment and test embeddings into scores; cosine now, cohort normalisation (AS-norm)
and LDA/PLDA plug in behind the same two methods. Embeddings may be unnormalised: each back end
defines its own comparison.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _unit(vectors) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class Scorer:
    """Compares embeddings. Subclasses implement `score_matrix`; `score_pairs` scores row i with row i.
    `score_range` is (lowest, highest) where scores are bounded (a threshold outside it is meaningless)."""

    name = "scorer"
    score_range: tuple[float, float] | None = None

    def score_matrix(self, enroll, test) -> np.ndarray:
        """Scores (n, m) of every enrolment embedding (n, dim) against every test embedding (m, dim)."""
        raise NotImplementedError

    def score_pairs(self, enroll, test) -> np.ndarray:
        """Scores (n,) of enroll[i] against test[i]."""
        enroll, test = np.atleast_2d(enroll), np.atleast_2d(test)
        return np.array([self.score_matrix(e[None], t[None])[0, 0] for e, t in zip(enroll, test)])

    def score(self, enroll, test) -> float:
        """Score of one enrolment embedding against one test embedding."""
        return float(self.score_matrix(np.ravel(enroll)[None], np.ravel(test)[None])[0, 0])


class CosineScorer(Scorer):
    """Cosine similarity (a dot product of L2-normalised embeddings).

    >>> round(CosineScorer().score([1.0, 0.0], [1.0, 1.0]), 4)
    0.7071
    """

    name = "cosine"
    score_range = (-1.0, 1.0)

    def score_matrix(self, enroll, test) -> np.ndarray:
        return _unit(enroll) @ _unit(test).T

    def score_pairs(self, enroll, test) -> np.ndarray:
        return np.sum(_unit(enroll) * _unit(test), axis=1)


SCORERS = {"cosine": CosineScorer}


def build_scorer(name: str = "cosine", **options) -> Scorer:
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose from {sorted(SCORERS)}")
    return SCORERS[name](**options)
