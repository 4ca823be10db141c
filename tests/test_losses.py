import numpy as np
import pytest

from deep_speaker.losses import LOSSES, AMSoftmaxLoss, TripletLoss, triplet_loss


def test_triplet_loss_values():
    a = np.array([[1.0, 0.0]], np.float32)
    easy = np.concatenate([a, a, [[0.0, 1.0]]])  # cos(a,p)=1, cos(a,n)=0 -> max(0 - 1 + 0.1, 0) = 0
    hard = np.concatenate([a, [[0.0, 1.0]], a])  # cos(a,p)=0, cos(a,n)=1 -> 1.1
    assert float(triplet_loss(None, easy)) == pytest.approx(0.0)
    assert float(triplet_loss(None, hard)) == pytest.approx(1.1)
    assert float(TripletLoss(0.5)(np.zeros(3), hard)) == pytest.approx(1.5)


def test_am_softmax_is_cross_entropy_of_scaled_margin_logits():
    cosines = np.array([[0.3, 0.1, -0.2]], np.float32)
    logits = 30 * (cosines - 0.2 * np.array([[1, 0, 0]]))
    expected = -np.log(np.exp(logits[0, 0]) / np.exp(logits[0]).sum())
    assert float(AMSoftmaxLoss(0.2, 30.0)(np.array([0]), cosines)) == pytest.approx(expected, rel=1e-5)


def test_registry_names_its_classifier_and_batches():
    assert set(LOSSES) == {"softmax", "amsoftmax", "triplet"}
    assert LOSSES["softmax"].output(5).name == "dense" and LOSSES["amsoftmax"].output(5).name == "dense"
    assert {spec.batches for spec in LOSSES.values()} == {"classification", "triplet"}
