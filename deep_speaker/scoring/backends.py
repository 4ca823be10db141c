"""Score back ends: the one place that compares embeddings.

A `Scorer` turns enrolment and test embeddings into scores. `cosine` needs nothing; the others are fitted
on embeddings of training speakers (never the evaluation speakers) and saved keyed to the model
(`save_scorer`/`load_scorer`):
- `centered`: cosine after subtracting the training embeddings' mean (removes the direction every
  embedding shares, often a channel);
- `asnorm`: adaptive symmetric score normalisation (Matejka et al. 2017): each raw cosine is standardised
  by the mean and deviation of the enrolment's and the test's top-N scores against a cohort;
- `plda`: centring, LDA, length normalisation, then a two-covariance PLDA log-likelihood ratio
  (Garcia-Romero and Espy-Wilson 2011).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, ConfigError
from ..fileio import atomic_replace, toolkit_home
from ..model_home import find, user_home


def _unit(vectors) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class Scorer:
    """Compares embeddings. Subclasses implement `score_matrix`; `score_pairs` scores row i with row i.
    `score_range` is (lowest, highest) where scores are bounded (a threshold outside it is meaningless).
    Fitted back ends keep their state in `state` (arrays) and `options` (numbers), which is what is saved."""

    name = "scorer"
    score_range: tuple[float, float] | None = None
    needs_fit = False
    needs_labels = True  # False: fitted on unlabelled recordings (any folder of audio)

    def __init__(self, **options):
        self.options = options
        self.state: dict[str, np.ndarray] = {}

    def fit(self, embeddings, labels) -> Scorer:
        """Learn from embeddings (n, dim) of training speakers `labels` (n,); a no-op for cosine."""
        return self

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

    def _require_fit(self) -> None:
        if self.needs_fit and not self.state:
            raise ConfigError(f"the {self.name} back end is not fitted: fit it on training-speaker embeddings first")


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


class CenteredCosineScorer(CosineScorer):
    """Cosine after subtracting the mean of the (unit) training embeddings."""

    name = "centered"
    needs_fit = True

    def fit(self, embeddings, labels=None):
        self.state = {"mean": _unit(embeddings).mean(axis=0)}
        return self

    def score_matrix(self, enroll, test) -> np.ndarray:
        self._require_fit()
        return super().score_matrix(_unit(enroll) - self.state["mean"], _unit(test) - self.state["mean"])

    def score_pairs(self, enroll, test) -> np.ndarray:
        self._require_fit()
        return super().score_pairs(_unit(enroll) - self.state["mean"], _unit(test) - self.state["mean"])


class ASNormScorer(Scorer):
    """Adaptive symmetric normalisation of cosine scores against a cohort of training-speaker embeddings.

    The cohort is one mean embedding per training speaker; `top_n` of its scores (the closest impostors)
    give each side's mean and deviation.
    """

    name = "asnorm"
    needs_fit = True

    def __init__(self, top_n: int = 100):
        if int(top_n) < 2:
            raise ConfigError(f"AS-norm top_n must be at least 2, got {top_n}")
        super().__init__(top_n=int(top_n))

    def fit(self, embeddings, labels):
        labels = np.asarray(labels)
        units = _unit(embeddings)
        self.state = {"cohort": _unit(np.stack([units[labels == label].mean(axis=0) for label in np.unique(labels)]))}
        return self

    def _cohort_statistics(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        scores = _unit(vectors) @ self.state["cohort"].T
        top = -np.sort(-scores, axis=1)[:, : min(self.options["top_n"], scores.shape[1])]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-6)

    def score_matrix(self, enroll, test) -> np.ndarray:
        self._require_fit()
        raw = _unit(enroll) @ _unit(test).T
        enroll_mean, enroll_std = self._cohort_statistics(enroll)
        test_mean, test_std = self._cohort_statistics(test)
        return 0.5 * ((raw - enroll_mean[:, None]) / enroll_std[:, None] + (raw - test_mean[None, :]) / test_std[None, :])


class SNormScorer(ASNormScorer):
    """Symmetric normalisation against an unlabelled cohort of recordings from the domain being scored: each side's
    score is standardised by the mean and deviation of its scores against the whole cohort (a recording's own copy
    left out), then the two are averaged.

    A cosine threshold means a different false-accept rate on every corpus (impostors of one language, channel or
    phrase score higher together); scores standardised against recordings of the same domain do not: fitted on
    recordings of the target domain (no labels: the speakers may even be the ones scored), the `far1` threshold of a
    calibration made on other domains kept 1.0-1.4 % false accepts on every channel domain of benchmarks/domains.py
    (cosine: 0 or 78 %), and the EER fell by a quarter to a third.
    """

    name = "snorm"
    needs_labels = False
    MIN_COHORT = 20  # recordings: fewer cannot estimate a score distribution
    SAME_RECORDING = 1 - 1e-6  # a cosine this close to 1 is the scored recording itself

    def __init__(self, max_cohort: int = 3000):
        if int(max_cohort) < self.MIN_COHORT:
            raise ConfigError(f"S-norm max_cohort must be at least {self.MIN_COHORT}, got {max_cohort}")
        Scorer.__init__(self, max_cohort=int(max_cohort))

    def fit(self, embeddings, labels=None):
        """Keep (at most `max_cohort`, a seeded sample of) the unit embeddings as the cohort; labels are not used."""
        units = _unit(embeddings)
        if len(units) < self.MIN_COHORT:
            raise ConfigError(f"an S-norm cohort needs at least {self.MIN_COHORT} recordings of the domain, got {len(units)}")
        if len(units) > self.options["max_cohort"]:
            units = units[np.sort(np.random.default_rng(0).choice(len(units), self.options["max_cohort"], replace=False))]
        self.state = {"cohort": units.astype(np.float32)}
        return self

    def _cohort_statistics(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        scores = _unit(vectors) @ self.state["cohort"].T.astype(np.float64)
        scores[scores >= self.SAME_RECORDING] = np.nan
        return np.nanmean(scores, axis=1), np.maximum(np.nanstd(scores, axis=1), 1e-6)


class PLDAScorer(Scorer):
    """LDA to `lda_dim` dimensions, length normalisation, two-covariance PLDA log-likelihood ratios.

    Two-covariance model: x = y + e, speaker y ~ N(0, B), residual e ~ N(0, W); the score of (x1, x2) is
    log p(x1, x2 | same) - log p(x1, x2 | different) = 1/2 x1'Q x1 + 1/2 x2'Q x2 + x1'P x2 + constant.
    """

    name = "plda"
    needs_fit = True

    def __init__(self, lda_dim: int = 100):
        if int(lda_dim) < 1:
            raise ConfigError(f"PLDA lda_dim must be at least 1, got {lda_dim}")
        super().__init__(lda_dim=int(lda_dim))

    def _project(self, vectors) -> np.ndarray:
        projected = (_unit(vectors) - self.state["mean"]) @ self.state["lda"]
        return projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12) * np.sqrt(projected.shape[1])

    def fit(self, embeddings, labels):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        labels = np.asarray(labels)
        speakers = np.unique(labels)
        if speakers.size < 3:
            raise ConfigError(f"PLDA needs embeddings of at least 3 speakers, got {speakers.size}")
        units = _unit(embeddings)
        dim = min(self.options["lda_dim"], speakers.size - 1, units.shape[1])
        lda = LinearDiscriminantAnalysis(n_components=dim, solver="eigen", shrinkage=1e-3).fit(units, labels)
        self.state = {"mean": units.mean(axis=0), "lda": lda.scalings_[:, :dim]}
        x = self._project(units)
        x = x - x.mean(axis=0)
        centroids = np.stack([x[labels == s].mean(axis=0) for s in speakers])
        between = np.cov(centroids, rowvar=False, bias=True) + 1e-6 * np.eye(dim)
        within = sum(np.cov(x[labels == s], rowvar=False, bias=True) * np.sum(labels == s) for s in speakers) / len(x) + 1e-6 * np.eye(dim)
        total = between + within
        total_inverse = np.linalg.inv(total)
        inner = np.linalg.inv(total - between @ total_inverse @ between)
        self.state.update(Q=total_inverse - inner, P=total_inverse @ between @ inner)
        return self

    def score_matrix(self, enroll, test) -> np.ndarray:
        self._require_fit()
        a, b = self._project(enroll), self._project(test)
        Q, P = self.state["Q"], self.state["P"]
        return 0.5 * np.einsum("ij,jk,ik->i", a, Q, a)[:, None] + 0.5 * np.einsum("ij,jk,ik->i", b, Q, b)[None, :] + a @ P @ b.T


SCORERS = {"cosine": CosineScorer, "centered": CenteredCosineScorer, "asnorm": ASNormScorer, "snorm": SNormScorer, "plda": PLDAScorer}


def build_scorer(name: str = "cosine", **options) -> Scorer:
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose from {sorted(SCORERS)}")
    return SCORERS[name](**options)


def _before_homes(fingerprint: str, name: str) -> Path:
    """Where the user's back ends were kept before model homes (moved into the home when found)."""
    return toolkit_home() / "backends" / f"{fingerprint}.{name}.npz"


def save_scorer(scorer: Scorer, fingerprint: str, homes=None) -> Path:
    """Save a fitted back end in the model's home as `<scorer>.npz` (plain arrays and JSON options: nothing to
    execute): the user's, or under the folder of homes `homes` (`deep_speaker/pretrained/models` ships it)."""
    path = (Path(homes) / fingerprint if homes else user_home(fingerprint)) / f"{scorer.name}.npz"
    arrays = {f"state_{key}": value for key, value in scorer.state.items()}
    header = json.dumps({"name": scorer.name, "model": fingerprint, "options": scorer.options})

    def write(temporary):
        with open(temporary, "wb") as stream:
            np.savez(stream, header=np.array(header), **arrays)

    atomic_replace(path, write)
    return path


def load_scorer(name: str, fingerprint: str) -> Scorer:
    """The back end `name` fitted for the model `fingerprint` (cosine needs none): the user's, else a shipped one."""
    scorer = build_scorer(name)
    if not scorer.needs_fit:
        return scorer
    path = find(fingerprint, f"{name}.npz", _before_homes(fingerprint, name))
    if path is None:
        source = "recordings of the domain you score (no labels)" if not scorer.needs_labels else "training speakers' recordings"
        raise CalibrationError(
            f"no {name} back end fitted for model {fingerprint} ({user_home(fingerprint) / f'{name}.npz'})",
            cli_hint=f"run `fit-backend --scorer {name} --audio-dir DIR` on {source} first",
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            state = {key.removeprefix("state_"): data[key] for key in data.files if key.startswith("state_")}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise CalibrationError(f"{path}: not a readable back-end file ({error})") from error
    if header.get("model") != fingerprint or header.get("name") != name:
        raise CalibrationError(f"{path}: fitted for model {header.get('model')}, not {fingerprint}")
    scorer = build_scorer(name, **header.get("options", {}))
    scorer.state = state
    return scorer
