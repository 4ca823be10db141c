import numpy as np
import pytest
from sklearn.metrics import roc_curve

from deep_speaker.scoring.metrics import compute_eer, compute_min_dcf, reference_metrics, threshold_at_false_accept_rate


def test_eer_hand_cases():
    assert compute_eer([0.9, 0.8], [0.1, 0.2])[0] == 0.0
    assert compute_eer([0.9, 0.3], [0.5, 0.1])[0] == pytest.approx(0.5)
    assert compute_eer([0.1, 0.2], [0.8, 0.9])[0] == pytest.approx(1.0)
    eer, threshold = compute_eer([0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65])
    assert eer == pytest.approx(0.25)
    assert 0.6 <= threshold <= 0.65


@pytest.mark.parametrize("seed", range(5))
def test_eer_agrees_with_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    target, nontarget = rng.normal(1.0, 1.0, 700), rng.normal(-1.0, 1.0, 5000)
    labels = np.r_[np.ones(target.size), np.zeros(nontarget.size)]
    fpr, tpr, _ = roc_curve(labels, np.r_[target, nontarget])
    fnr = 1 - tpr
    crossing = np.argmin(np.abs(fnr - fpr))
    eer = compute_eer(target, nontarget)[0]
    assert min(fpr[crossing], fnr[crossing]) - 2e-3 <= eer <= max(fpr[crossing], fnr[crossing]) + 2e-3
    # two unit-variance Gaussians 2 apart: EER = Phi(-1) = 0.1587
    assert eer == pytest.approx(0.1587, abs=0.03)


def test_min_dcf_hand_case():
    # threshold between 0.4 and 0.5 : one miss of 2 targets, no false accept -> 0.5 * 0.01 / 0.01 = 0.5
    # threshold below 0.4: no miss, 1 false accept of 4 -> 0.25 * 0.99 / 0.01 = 24.75
    dcf, threshold = compute_min_dcf([0.9, 0.4], [0.5, 0.1, 0.2, 0.3], p_target=0.01)
    assert dcf == pytest.approx(0.5)
    assert threshold == pytest.approx(0.9)
    assert compute_min_dcf([0.9, 0.8], [0.1, 0.2], p_target=0.001)[0] == 0.0


def test_min_dcf_never_exceeds_one():
    rng = np.random.default_rng(0)
    assert compute_min_dcf(rng.random(100), rng.random(1000), 0.001)[0] <= 1.0 + 1e-12


def test_threshold_at_false_accept_rate():
    nontarget = np.arange(1000) / 1000.0
    threshold = threshold_at_false_accept_rate(nontarget, 0.01)
    assert np.mean(nontarget >= threshold) <= 0.01
    assert np.mean(nontarget >= threshold - 0.002) > 0.01


def _reference_loop(sims, labels):
    """The reference's eval_metrics.evaluate, written as its loops (oracle)."""
    thresholds = np.arange(0, 1.0, 0.001)
    fms, tprs, accs = [], [], []
    eer_diff, eer = 1e9, None
    for t in thresholds:
        predict = np.greater(sims, t)
        tp = np.sum(predict & labels)
        fp = np.sum(predict & ~labels)
        tn = np.sum(~predict & ~labels)
        fn = np.sum(~predict & labels)
        tpr = 0 if tp + fn == 0 else tp / (tp + fn)
        precision = 0 if tp + fp == 0 else tp / (tp + fp)
        fms.append(2 * precision * tpr / (precision + tpr + 1e-12))
        tprs.append(tpr)
        accs.append((tp + tn) / sims.size)
        frr = 1 - tp / np.sum(labels)
        far = fp / np.sum(~labels)
        if abs(frr - far) < eer_diff:
            eer_diff, eer = abs(frr - far), (frr + far) / 2
    best = int(np.argmax(fms))
    return fms[best], tprs[best], accs[best], eer


def test_reference_metrics_match_reference_loops():
    rng = np.random.default_rng(3)
    labels = np.zeros((50, 100), bool)
    labels[:, 0] = True
    sims = np.clip(rng.normal(0.3, 0.2, labels.shape) + 0.4 * labels, -1, 1)
    metrics = reference_metrics(sims, labels)
    expected = _reference_loop(sims.ravel(), labels.ravel())
    assert (metrics.f_measure, metrics.true_positive_rate, metrics.accuracy, metrics.equal_error_rate) == pytest.approx(expected)
    assert str(metrics).startswith("f-measure = ")
    assert "equal error rate = " in str(metrics)


def test_cllr_and_actual_dcf_reward_calibration_and_punish_overconfidence():
    from deep_speaker.scoring.metrics import actual_dcf, cllr

    rng = np.random.default_rng(0)
    target, nontarget = rng.normal(0.5, 1.0, 20000), rng.normal(-0.5, 1.0, 20000)  # equal-variance Gaussians: LLR = x
    calibrated = cllr(target, nontarget)
    assert 0.7 < calibrated < 0.95
    assert cllr(target - 2, nontarget - 2) > calibrated  # shifted: miscalibrated
    assert cllr(20 * target, 20 * nontarget) > 1.0  # twenty times overconfident: worse than saying nothing
    assert cllr(np.zeros(5), np.zeros(5)) == pytest.approx(1.0)
    assert actual_dcf(np.full(10, 10.0), np.full(10, -10.0), 0.01) == 0.0
    assert actual_dcf(np.full(10, 10.0), np.full(10, 10.0), 0.01) == pytest.approx(99.0)  # every impostor accepted
    assert actual_dcf(np.full(10, 4.0), np.full(10, -10.0), 0.01) == pytest.approx(1.0)  # below log(99): every target missed
