"""Evaluation protocols: open-set verification on a trial list, and the reference's closed-set `test-model`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import ConfigError, DeepSpeakerError, TrialsError
from .fileio import atomic_replace, atomic_write_bytes
from .scoring import CosineScorer, Scorer
from .scoring.metrics import ReferenceMetrics, compute_eer, compute_min_dcf, reference_metrics

logger = logging.getLogger(__name__)

NEGATIVES_PER_ANCHOR = 99


@dataclass(frozen=True)
class Trials:
    """A VoxCeleb-format trial list: `label enroll test` per line, 1 = same speaker."""

    labels: np.ndarray
    enroll: list[str]
    test: list[str]

    @classmethod
    def read(cls, path) -> Trials:
        path = Path(path)
        if not path.is_file():
            raise TrialsError(f"{path}: no such trial list")
        try:
            text = path.read_text()
        except UnicodeDecodeError as error:
            raise TrialsError(f"{path}: not a text trial list ({error.reason} at byte {error.start})") from error
        labels, enroll, test = [], [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise TrialsError(f"{path}:{number}: expected 'label enroll test' with label 0 or 1, got {line!r}")
            labels.append(int(fields[0]))
            enroll.append(fields[1])
            test.append(fields[2])
        if not labels or all(labels) or not any(labels):
            raise TrialsError(f"{path}: needs both target (1) and non-target (0) trials")
        return cls(np.array(labels), enroll, test)

    def files(self) -> list[str]:
        """Each file named by the list, once, in first-seen order."""
        return list(dict.fromkeys(self.enroll + self.test))


ON_REFUSED = ("skip", "fail")  # a recording the encoder refuses: its trials are excluded and counted, or the run stops


@dataclass(frozen=True)
class VerificationResult:
    eer: float
    eer_threshold: float
    min_dcf_01: float
    min_dcf_001: float
    target_scores: np.ndarray
    nontarget_scores: np.ndarray
    refused: dict = field(default_factory=dict)  # recording (as the trial list names it) -> why it was refused
    refused_trials: int = 0  # trials excluded because one of their recordings was refused
    scores: np.ndarray | None = None  # every trial's score in list order, NaN where refused

    def summary(self) -> dict:
        return {
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "min_dcf_p0.01": self.min_dcf_01,
            "min_dcf_p0.001": self.min_dcf_001,
            "target_trials": int(self.target_scores.size),
            "nontarget_trials": int(self.nontarget_scores.size),
            "refused_trials": self.refused_trials,
            "refused_recordings": self.refused,
        }

    def __str__(self) -> str:
        refused = f"; {self.refused_trials} trials excluded: {len(self.refused)} recording(s) refused" if self.refused else ""
        return (
            f"EER = {100 * self.eer:.2f} % (threshold {self.eer_threshold:.4f}), minDCF(0.01) = {self.min_dcf_01:.4f}, "
            f"minDCF(0.001) = {self.min_dcf_001:.4f} on {self.target_scores.size} target / {self.nontarget_scores.size} non-target trials{refused}"
        )


def verification_result(scores: np.ndarray, labels: np.ndarray) -> VerificationResult:
    target, nontarget = scores[labels == 1], scores[labels == 0]
    eer, threshold = compute_eer(target, nontarget)
    return VerificationResult(
        eer, threshold, compute_min_dcf(target, nontarget, 0.01)[0], compute_min_dcf(target, nontarget, 0.001)[0], target, nontarget
    )


def score_trials(embeddings: dict[str, np.ndarray], trials: Trials, scorer: Scorer | None = None) -> np.ndarray:
    """The score of every trial from embeddings keyed by file name (cosine unless another `scorer`)."""
    enroll = np.stack([embeddings[f] for f in trials.enroll])
    test = np.stack([embeddings[f] for f in trials.test])
    return (scorer or CosineScorer()).score_pairs(enroll, test)


def evaluate_trials(
    encoder, trials_path, audio_root, progress: bool = True, scorer: Scorer | None = None, on_refused: str = "skip"
) -> VerificationResult:
    """Embed each file of the list once (relative to `audio_root`) and compute EER and minDCF. A recording the
    encoder refuses (no speech, too short, corrupt) excludes its trials, which are counted and named in the result
    (`on_refused="skip"`), or stops the evaluation (`"fail"`)."""
    if on_refused not in ON_REFUSED:
        raise ConfigError(f"on_refused must be one of {ON_REFUSED}, got {on_refused!r}")
    trials = Trials.read(trials_path)
    files = trials.files()
    refused_paths: dict[str, str] | None = {} if on_refused == "skip" else None
    vectors = encoder.embed_many([Path(audio_root) / f for f in files], progress=progress, refused=refused_paths)
    usable = np.all(np.isfinite(vectors), axis=1)
    refused = {name: refused_paths.get(str(Path(audio_root) / name), "refused") for name, ok in zip(files, usable) if not ok}
    embeddings = dict(zip(files, np.where(usable[:, None], vectors, 0.0)))
    scores = score_trials(embeddings, trials, scorer)
    kept = np.array([not (enroll in refused or test in refused) for enroll, test in zip(trials.enroll, trials.test)])
    if not (np.any(trials.labels[kept] == 1) and np.any(trials.labels[kept] == 0)):
        raise TrialsError(f"{trials_path}: {len(refused)} refused recording(s) leave no target or no non-target trial to score")
    result = verification_result(scores[kept], trials.labels[kept])
    return replace(result, refused=refused, refused_trials=int(np.sum(~kept)), scores=np.where(kept, scores, np.nan))


def write_scores(path, trials_path, result: VerificationResult) -> None:
    """Every trial with its score (`label enroll test score`, `refused` where a recording was refused), atomically."""
    trials = Trials.read(trials_path)
    lines = [
        f"{label} {enroll} {test} {'refused' if np.isnan(score) else f'{score:.6f}'}"
        for label, enroll, test, score in zip(trials.labels, trials.enroll, trials.test, result.scores)
    ]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())


def save_result(result: VerificationResult, json_path=None, plot_path=None, extra: dict | None = None) -> None:
    if json_path:
        atomic_write_bytes(Path(json_path), json.dumps({**result.summary(), **(extra or {})}, indent=2).encode())
    if plot_path:
        plot_roc_det(result.target_scores, result.nontarget_scores, plot_path)


def plot_roc_det(target_scores, nontarget_scores, path) -> None:
    """ROC (linear axes) and DET (normal-deviate axes) side by side in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm
    from sklearn.metrics import roc_curve

    labels = np.concatenate([np.ones(len(target_scores)), np.zeros(len(nontarget_scores))])
    false_accept, true_accept, _ = roc_curve(labels, np.concatenate([target_scores, nontarget_scores]))
    miss = 1 - true_accept
    eer = compute_eer(target_scores, nontarget_scores)[0]
    figure, (roc_axis, det_axis) = plt.subplots(1, 2, figsize=(11, 5))
    roc_axis.plot(false_accept, true_accept)
    roc_axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_axis.set(xlabel="false accept rate", ylabel="true accept rate", title=f"ROC (EER {100 * eer:.2f} %)")
    clip = 1e-4
    det_axis.plot(norm.ppf(np.clip(false_accept, clip, 1 - clip)), norm.ppf(np.clip(miss, clip, 1 - clip)))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    det_axis.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    det_axis.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    det_axis.set(
        xlabel="false accept rate (%)", ylabel="miss rate (%)", title="DET", xlim=norm.ppf([clip, 0.6]), ylim=norm.ppf([clip, 0.6])
    )
    det_axis.plot(norm.ppf([clip, 0.6]), norm.ppf([clip, 0.6]), linestyle=":", color="grey")
    for axis in (roc_axis, det_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    atomic_replace(Path(path), lambda temporary: figure.savefig(temporary, dpi=100, format="png"))
    plt.close(figure)


def closed_set_trials(labels: np.ndarray, seed: int = 123, negatives: int = NEGATIVES_PER_ANCHOR) -> list[tuple[int, int, list[int]]]:
    """The reference's `test-model` layout: per speaker, (anchor, positive, negatives from other speakers).

    `labels` are the speaker labels of the candidate utterances; speakers with fewer than 2 are skipped.
    Each negative comes from a different speaker (up to `negatives` of them).
    """
    rng = np.random.default_rng(seed)
    by_speaker = {int(s): np.flatnonzero(labels == s) for s in np.unique(labels)}
    layout = []
    for speaker, members in by_speaker.items():
        if members.size < 2:
            continue
        anchor, positive = rng.choice(members, 2, replace=False)
        others = [s for s in by_speaker if s != speaker]
        chosen = rng.choice(others, min(negatives, len(others)), replace=False)
        layout.append((int(anchor), int(positive), [int(rng.choice(by_speaker[int(s)])) for s in chosen]))
    if not layout:
        raise DeepSpeakerError("closed-set test needs at least one speaker with 2 held-out utterances")
    return layout


def closed_set_metrics(embeddings: np.ndarray, labels: np.ndarray, seed: int = 123, scorer: Scorer | None = None) -> ReferenceMetrics:
    """Reference metrics over the closed-set layout: row = [positive score, negative scores...]."""
    scorer = scorer or CosineScorer()
    scores, truth = [], []
    for anchor, positive, negatives in closed_set_trials(labels, seed):
        scores.append(scorer.score_matrix(embeddings[[positive, *negatives]], embeddings[anchor][None])[:, 0])
        truth.append(np.r_[1, np.zeros(len(negatives))])
    return reference_metrics(np.concatenate(scores), np.concatenate(truth))


def fit_backend(encoder, source, name: str, progress: bool = True) -> Scorer:
    """Fit the back end `name` on embeddings of the corpus `source`: training speakers (not the evaluation's), or
    for a back end that needs no labels (`snorm`) any recordings of the domain to be scored."""
    from .data.corpus import audio_files, discover_utterances
    from .scoring import build_scorer

    scorer = build_scorer(name)
    if not scorer.needs_fit:
        return scorer
    if scorer.needs_labels:
        utterances = discover_utterances(source)
        embeddings = encoder.embed_many([u.path for u in utterances], progress=progress)
        return scorer.fit(embeddings, np.array([u.speaker for u in utterances]))
    paths = audio_files(source)
    refused: dict = {}
    embeddings = encoder.embed_many(paths, progress=progress, refused=refused)
    kept = np.all(np.isfinite(embeddings), axis=1)
    if refused:
        logger.warning("%d of %d recordings refused and left out of the cohort (first: %s)", len(refused), len(paths), next(iter(refused)))
    return scorer.fit(embeddings[kept])
