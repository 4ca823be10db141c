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
    assert set(LOSSES) == {"softmax", "amsoftmax", "aamsoftmax", "triplet", "batch_hard_triplet"}
    assert LOSSES["softmax"].output(5).name == "dense" and LOSSES["amsoftmax"].output(5).name == "dense"
    assert {spec.batches for spec in LOSSES.values()} == {"classification", "triplet", "speakers"}


def test_aam_softmax_shifts_the_true_class_angle():
    from deep_speaker.losses import AAMSoftmaxLoss

    cosines = np.array([[0.3, 0.25, -0.2]], np.float32)
    theta = np.arccos(0.3)
    logits = 30 * np.array([np.cos(theta + 0.2), 0.25, -0.2])
    expected = -np.log(np.exp(logits[0]) / np.exp(logits).sum())
    assert float(AAMSoftmaxLoss(0.2, 30.0)(np.array([0]), cosines)) == pytest.approx(expected, rel=1e-4)
    # past pi - m the logit keeps falling with the angle: cos(theta) - m sin(m)
    far = np.array([[-0.999, 0.5]], np.float32)
    far_logits = 30 * np.array([-0.999 - 0.2 * np.sin(0.2), 0.5])
    assert float(AAMSoftmaxLoss(0.2, 30.0)(np.array([0]), far)) == pytest.approx(
        -np.log(np.exp(far_logits[0]) / np.exp(far_logits).sum()), rel=1e-4
    )


def test_margin_warmup_raises_the_margin_linearly():
    from deep_speaker.losses import AAMSoftmaxLoss, MarginWarmup

    loss = AAMSoftmaxLoss(0.3)
    warmup = MarginWarmup(loss, epochs=3)
    seen = []
    for epoch in range(5):
        warmup.on_epoch_begin(epoch)
        seen.append(float(loss.current_margin.numpy()))
    np.testing.assert_allclose(seen, [0.0, 0.1, 0.2, 0.3, 0.3], atol=1e-7)
