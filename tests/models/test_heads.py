import keras
import numpy as np
import pytest

from deep_speaker.errors import ConfigError
from deep_speaker.layers import CosineLogits, EmbeddingFusion
from deep_speaker.losses import AMSoftmaxLoss
from deep_speaker.models import build_backbone
from deep_speaker.models.heads import build_dense_head, build_head
from deep_speaker.scoring import CosineScorer, all_pairs_eer
from deep_speaker.tf.train import tune_fusion_weight


def test_head_shapes():
    base = build_backbone("rescnn", width=0.0625, embedding_dim=32)
    dense = build_head("dense", base, embedding_dim=16, hidden_units=(24, 24))
    assert dense.input_shape == (None, 32) and dense.output_shape == (None, 16)
    tdnn = build_head("tdnn", base, embedding_dim=16, channels=24)
    assert tdnn.input_shape == (None, None, 128)
    out = np.asarray(tdnn(np.random.default_rng(0).standard_normal((2, 13, 128)).astype("float32")))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ConfigError, match="unknown head"):
        build_head("lstm", base)


def _speaker_embeddings(speakers: int, utterances: int, seed: int):
    """Base embeddings whose speaker information lives in a shared 8-d subspace, plus nuisance variation."""
    basis = np.linalg.qr(np.random.default_rng(42).standard_normal((64, 64)))[0][:, :8]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(speakers), utterances)
    x = rng.standard_normal((speakers, 8))[labels] @ basis.T + 0.35 * rng.standard_normal((labels.size, 64))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32"), labels


def _eer(embeddings, labels):
    return all_pairs_eer(CosineScorer().score_matrix(embeddings, embeddings), labels)


@pytest.mark.slow
def test_seed_failure_in_miniature_and_the_recipe_that_fixes_it():
    """The seeds bolted an untrained head (loaded weights did not match) compiled with MSE onto the embedding:
    recognition collapsed. Our recipe (AM-softmax training, then score fusion with a weight tuned on held-out
    utterances of the training speakers) must not lose what the base knows."""
    keras.utils.set_random_seed(0)
    train_x, train_y = _speaker_embeddings(60, 10, seed=1)
    test_x, test_y = _speaker_embeddings(20, 8, seed=2)  # unseen speakers
    base_eer = _eer(test_x, test_y)

    untrained = build_dense_head(64, (64, 64), 16, 0.1)
    untrained_eer = _eer(untrained.predict(test_x, verbose=0), test_y)
    mse = build_dense_head(64, (64, 64), 16, 0.1)
    mse.compile(optimizer="adam", loss="mse")
    mse.fit(train_x, np.zeros((len(train_x), 16)), epochs=20, verbose=0)  # MSE against placeholder targets
    mse_eer = _eer(mse.predict(test_x, verbose=0), test_y)
    assert untrained_eer > base_eer + 0.1 and mse_eer > base_eer + 0.1

    head = build_dense_head(64, (64, 64), 16, 0.1)
    trainer = keras.Model(head.input, CosineLogits(60)(head.output))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=AMSoftmaxLoss(0.2, 30.0))
    held_out = np.arange(len(train_y)) % 10 >= 8
    trainer.fit(train_x[~held_out], train_y[~held_out], epochs=20, batch_size=32, verbose=0)
    weight, _ = tune_fusion_weight(train_x[held_out], head.predict(train_x[held_out], verbose=0), train_y[held_out])
    fused = np.asarray(EmbeddingFusion("score", weight)([test_x, head.predict(test_x, verbose=0)]))
    recipe_eer = _eer(fused, test_y)
    assert recipe_eer < untrained_eer - 0.1 and recipe_eer < mse_eer - 0.1
    assert recipe_eer <= base_eer + 0.02
