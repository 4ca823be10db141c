import numpy as np
import pytest
import keras

from deep_speaker.cache import build_feature_cache
from deep_speaker.checkpoints import load_model, save_model
from deep_speaker.config import HeadConfig
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError
from deep_speaker.layers import CosineLogits, EmbeddingFusion, FeatureSpec, StatsPooling
from deep_speaker.models import build_rescnn
from deep_speaker.models.heads import base_of, build_dense_head, build_fused, build_head, weights_fingerprint
from deep_speaker.scoring import compute_eer
from deep_speaker.training import AMSoftmaxLoss, train_head, tune_fusion_weight
from conftest import write_corpus


def test_layer_configs_round_trip():
    for layer in (StatsPooling(epsilon=1e-3), CosineLogits(7), EmbeddingFusion("score", 0.3, True, "abc"), FeatureSpec({"energies": "log"})):
        config = layer.get_config()
        assert layer.__class__.from_config(config).get_config() == config


def test_stats_pooling_values():
    x = np.array([[[1.0, 2.0], [3.0, 2.0]]], np.float32)
    np.testing.assert_allclose(StatsPooling(epsilon=0.0)(x), [[2.0, 2.0, 1.0, 0.0]], atol=1e-6)


def test_score_fusion_cosine_is_weighted_sum_of_cosines():
    rng = np.random.default_rng(0)
    base, head = rng.standard_normal((2, 2, 8)), rng.standard_normal((2, 2, 4))
    base /= np.linalg.norm(base, axis=-1, keepdims=True)
    head /= np.linalg.norm(head, axis=-1, keepdims=True)
    fused = np.asarray(EmbeddingFusion("score", 0.3)([base[:, 0].astype("float32"), head[:, 0].astype("float32")]))
    other = np.asarray(EmbeddingFusion("score", 0.3)([base[:, 1].astype("float32"), head[:, 1].astype("float32")]))
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-6)
    expected = 0.3 * np.sum(base[:, 0] * base[:, 1], -1) + 0.7 * np.sum(head[:, 0] * head[:, 1], -1)
    np.testing.assert_allclose(np.sum(fused * other, -1), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown fusion"):
        EmbeddingFusion("sum")


def test_head_shapes():
    base = build_rescnn(width=0.0625, embedding_dim=32)
    dense = build_head("dense", base, embedding_dim=16, hidden_units=(24, 24))
    assert dense.input_shape == (None, 32) and dense.output_shape == (None, 16)
    tdnn = build_head("tdnn", base, embedding_dim=16, channels=24)
    assert tdnn.input_shape == (None, None, 128)
    out = np.asarray(tdnn(np.random.default_rng(0).standard_normal((2, 13, 128)).astype("float32")))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown head"):
        build_head("lstm", base)


def _speaker_embeddings(speakers: int, utterances: int, seed: int):
    """Base embeddings whose speaker information lives in a shared 8-d subspace, plus nuisance variation."""
    basis = np.linalg.qr(np.random.default_rng(42).standard_normal((64, 64)))[0][:, :8]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(speakers), utterances)
    x = rng.standard_normal((speakers, 8))[labels] @ basis.T + 0.35 * rng.standard_normal((labels.size, 64))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32"), labels


def _eer(embeddings, labels):
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores, same = embeddings @ embeddings.T, labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    return compute_eer(scores[upper & same], scores[upper & ~same])[0]


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


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    build_feature_cache(write_corpus(root / "corpus", speakers=4, utterances=5), root / "wd", workers=1, progress=False)
    base = root / "base.keras"
    save_model(build_rescnn(width=0.0625, embedding_dim=32), base)
    return root / "wd", base


@pytest.mark.parametrize("head,loss", [("dense", "amsoftmax"), ("tdnn", "triplet")])
def test_train_head_saves_usable_fused_models(tiny_setup, head, loss):
    working_dir, base = tiny_setup
    config = HeadConfig(
        head=head, loss=loss, embedding_dim=8, hidden_units=16, tdnn_channels=16, batch_size=12, num_frames=40,
        crops_per_utterance=2, epochs=2, steps_per_epoch=2, validation_fraction=0.4, finetune_epochs=1 if head == "dense" else 0,
    )
    paths = train_head(working_dir, base, config, progress=False)
    assert set(paths) == {"head", "concat", "score"}
    dims = {"head": 8, "concat": 40, "score": 40}
    wav = next((working_dir.parent / "corpus").rglob("*.flac"))
    for fusion, path in paths.items():
        embedding = SpeakerEncoder(path).embed(wav)
        assert embedding.shape == (dims[fusion],)
        assert abs(np.linalg.norm(embedding) - 1) < 1e-4
    assert (working_dir / f"head_{head}_{loss}" / "head.json").is_file()


def test_untrained_or_mismatched_head_is_refused(tmp_path):
    base = build_rescnn(width=0.0625, embedding_dim=32)
    head = build_dense_head(32, (16, 16), 8)
    save_model(build_fused(base, head, "dense", "concat", trained=False), tmp_path / "untrained.keras")
    with pytest.raises(CheckpointError, match="untrained.keras: its refinement head was never trained"):
        load_model(tmp_path / "untrained.keras")
    fused = build_fused(base, head, "dense", "concat", trained=True)
    layer = base.get_layer("affine")
    layer.set_weights([w + 1.0 for w in layer.get_weights()])
    save_model(fused, tmp_path / "mismatched.keras")
    with pytest.raises(CheckpointError, match="mismatched.keras: the head was trained on base weights"):
        load_model(tmp_path / "mismatched.keras")
    fused.get_layer("fusion").base_fingerprint = weights_fingerprint(base_of(fused))
    save_model(fused, tmp_path / "good.keras")
    assert load_model(tmp_path / "good.keras").output_shape == (None, 40)
