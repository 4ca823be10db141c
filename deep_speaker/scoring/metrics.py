"""Verification metrics: EER and minDCF (NIST SRE definitions), and the reference's closed-set table.

Scores are split by label, as in SpeechBrain: `target_scores` (same speaker) and `nontarget_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _roc(target_scores, nontarget_scores):
    """(false-accept rates, miss rates, thresholds) from scikit-learn's ROC, thresholds descending."""
    from sklearn.metrics import roc_curve  # imported here: the command line starts without scikit-learn

    target_scores = np.asarray(target_scores, dtype=np.float64)
    nontarget_scores = np.asarray(nontarget_scores, dtype=np.float64)
    if target_scores.size == 0 or nontarget_scores.size == 0:
        raise ValueError("need at least one target and one non-target score")
    labels = np.concatenate([np.ones(target_scores.size), np.zeros(nontarget_scores.size)])
    false_accept, true_accept, thresholds = roc_curve(labels, np.concatenate([target_scores, nontarget_scores]), drop_intermediate=False)
    return false_accept, 1.0 - true_accept, thresholds


def compute_eer(target_scores, nontarget_scores) -> tuple[float, float]:
    """Equal error rate and its threshold, interpolated where the miss and false-accept curves cross.

    >>> compute_eer(np.array([0.9, 0.8]), np.array([0.1, 0.2]))[0]
    0.0
    >>> round(compute_eer(np.array([0.9, 0.3]), np.array([0.5, 0.1]))[0], 3)
    0.5
    """
    false_accept, miss, thresholds = _roc(target_scores, nontarget_scores)
    # Index 0 is threshold +inf (miss 1, false accept 0), so the first crossing is at index >= 1.
    after = int(np.nonzero(miss <= false_accept)[0][0])
    before = after - 1
    gap_before = false_accept[before] - miss[before]
    gap_after = false_accept[after] - miss[after]
    weight = gap_before / (gap_before - gap_after)
    eer = miss[before] + weight * (miss[after] - miss[before])
    if before == 0:
        return float(eer), float(thresholds[after])
    return float(eer), float(thresholds[before] + weight * (thresholds[after] - thresholds[before]))


def compute_min_dcf(target_scores, nontarget_scores, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost and its threshold (NIST SRE 2010+).

    DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target), divided by
    min(c_miss * p_target, c_fa * (1 - p_target)), the cost of always accepting or always rejecting.

    >>> compute_min_dcf(np.array([0.9, 0.8]), np.array([0.1, 0.2]))[0]
    0.0
    """
    false_accept, miss, thresholds = _roc(target_scores, nontarget_scores)
    costs = c_miss * miss * p_target + c_fa * false_accept * (1 - p_target)
    best = int(np.argmin(costs))
    return float(costs[best] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thresholds[best])


def cllr(target_llrs, nontarget_llrs) -> float:
    """Log-likelihood-ratio cost (Brummer and du Preez 2006), in bits: 0 for perfect calibrated LLRs, 1 for a system
    that always says LLR 0; above 1, its LLRs are worse than saying nothing.

    >>> round(cllr(np.array([0.0]), np.array([0.0])), 6)
    1.0
    """
    target_llrs, nontarget_llrs = np.asarray(target_llrs, np.float64), np.asarray(nontarget_llrs, np.float64)
    return float((np.mean(np.logaddexp(0, -target_llrs)) + np.mean(np.logaddexp(0, nontarget_llrs))) / (2 * np.log(2)))


def actual_dcf(target_llrs, nontarget_llrs, p_target: float = 0.01) -> float:
    """Normalised detection cost of deciding by the LLRs at the Bayes threshold log((1 - p) / p): what the
    calibration really delivers at that prior (minDCF is the best any threshold could)."""
    threshold = np.log((1 - p_target) / p_target)
    miss = float(np.mean(np.asarray(target_llrs) < threshold))
    false_accept = float(np.mean(np.asarray(nontarget_llrs) >= threshold))
    return (miss * p_target + false_accept * (1 - p_target)) / min(p_target, 1 - p_target)


def pair_masks(labels) -> tuple[np.ndarray, np.ndarray]:
    """(same-speaker, different-speaker) masks of the unordered pairs i < j of a labelled set."""
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    return upper & same, upper & ~same


def all_pairs_eer(scores: np.ndarray, labels) -> float:
    """EER over every unordered pair (i < j) of a set scored against itself: `scores` (n, n), speaker `labels` (n,).

    >>> all_pairs_eer(np.array([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]]), np.array([0, 0, 1]))
    0.0
    """
    same, different = pair_masks(labels)
    if not np.any(same) or not np.any(different):
        raise ValueError("all-pairs EER needs a speaker with two utterances and two speakers")
    return compute_eer(scores[same], scores[different])[0]


def threshold_at_false_accept_rate(nontarget_scores, rate: float) -> float:
    """Smallest threshold whose false-accept rate (score >= threshold) is at most `rate`."""
    ordered = np.sort(np.asarray(nontarget_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(rate * ordered.size))
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < ordered.size else float(ordered[-1])


@dataclass(frozen=True)
class ReferenceMetrics:
    """The reference `test-model` figures: best F-measure over thresholds, TPR and accuracy there, EER."""

    f_measure: float
    true_positive_rate: float
    accuracy: float
    equal_error_rate: float

    def __str__(self) -> str:
        return (
            f"f-measure = {self.f_measure:.3f}, true positive rate = {self.true_positive_rate:.3f}, "
            f"accuracy = {self.accuracy:.3f}, equal error rate = {self.equal_error_rate:.3f}"
        )


def reference_metrics(scores: np.ndarray, labels: np.ndarray) -> ReferenceMetrics:
    """The reference's eval_metrics.evaluate, vectorised: thresholds 0.000..0.999, accept when score > t."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    thresholds = np.arange(0, 1.0, 0.001)[:, None]
    accepted = scores[None, :] > thresholds
    tp = np.sum(accepted & labels, axis=1)
    fp = np.sum(accepted & ~labels, axis=1)
    tn = np.sum(~accepted & ~labels, axis=1)
    fn = np.sum(~accepted & labels, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(tp + fn == 0, 0.0, tp / (tp + fn))
        precision = np.where(tp + fp == 0, 0.0, tp / (tp + fp))
    f_measure = 2 * precision * tpr / (precision + tpr + 1e-12)
    accuracy = (tp + tn) / scores.size
    best = int(np.argmax(f_measure))
    n_same, n_diff = labels.sum(), max((~labels).sum(), 1)
    frr = 1 - tp / n_same if n_same else np.zeros(len(thresholds))
    far = fp / n_diff if n_same else np.zeros(len(thresholds))
    eer_index = int(np.argmin(np.abs(frr - far)))
    return ReferenceMetrics(float(f_measure[best]), float(tpr[best]), float(accuracy[best]), float((frr[eer_index] + far[eer_index]) / 2))
