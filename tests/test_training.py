import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deep_speaker.cache import build_feature_cache
from deep_speaker.checkpoints import load_model
from deep_speaker.config import SoftmaxConfig, TripletConfig
from deep_speaker.training import SpeakerFeatures, TripletBatches, train_softmax, train_triplet, triplet_loss
from conftest import write_corpus

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=0.0625, embedding_dim=32, batch_size=12, num_frames=40, steps_per_epoch=2, validation_fraction=0.4)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    build_feature_cache(write_corpus(root / "corpus", speakers=4, utterances=5), root / "wd", workers=1, progress=False)
    return root / "wd"


def _copy(cache: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(cache, target)
    return target


def _epochs(csv_path: Path) -> list[int]:
    with csv_path.open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_triplet_loss_values():
    a = np.array([[1.0, 0.0]], np.float32)
    easy = np.concatenate([a, a, [[0.0, 1.0]]])  # cos(a,p)=1, cos(a,n)=0 -> max(0 - 1 + 0.1, 0) = 0
    hard = np.concatenate([a, [[0.0, 1.0]], a])  # cos(a,p)=0, cos(a,n)=1 -> 1.1
    assert float(triplet_loss(None, easy)) == pytest.approx(0.0)
    assert float(triplet_loss(None, hard)) == pytest.approx(1.1)


def test_split_is_per_speaker_and_persisted(feature_cache, tmp_path):
    working_dir = _copy(feature_cache, tmp_path / "wd")
    data = SpeakerFeatures(working_dir, 0.4)
    assert len(data.validation) == 8 and len(data.train) == 12
    assert sorted(data.labels[data.validation]) == [0, 0, 1, 1, 2, 2, 3, 3]
    again = SpeakerFeatures(working_dir, 0.5)
    np.testing.assert_array_equal(again.validation, data.validation)


def test_hard_negatives_are_other_speakers_and_closest(feature_cache, tmp_path):
    data = SpeakerFeatures(_copy(feature_cache, tmp_path / "wd"))
    batches = TripletBatches(data, TripletConfig(**TINY, negative_candidates=12))
    x, y = batches[0]
    assert x.shape == (12, 40, 64, 1) and y.shape == (12,)
    # speaker 1 embeds exactly like speaker 0, the others are orthogonal: speaker 0's negatives must be speaker 1
    directions = np.eye(4, dtype=np.float32)
    directions[1] = directions[0]
    batches.embeddings = directions[data.labels]
    rng = np.random.default_rng(0)
    for _ in range(10):
        anchors, positives, negatives = batches.triplet_indices(rng)
        assert np.all(data.labels[anchors] == data.labels[positives]) and np.all(anchors != positives)
        assert np.all(data.labels[negatives] != data.labels[anchors])
        for anchor, negative in zip(anchors, negatives):
            if data.labels[anchor] == 0:
                assert data.labels[negative] == 1


def test_softmax_then_triplet_resume_and_reproducibility(feature_cache, tmp_path):
    first = _copy(feature_cache, tmp_path / "a")
    second = _copy(feature_cache, tmp_path / "b")
    config = SoftmaxConfig(**TINY, epochs=2)
    best = train_softmax(first, config, progress=False)
    train_softmax(second, config, progress=False)
    assert best.is_file() and (first / "softmax" / "last.keras").is_file()
    assert _epochs(first / "softmax" / "training.csv") == [0, 1]
    with (first / "softmax" / "training.csv").open() as a, (second / "softmax" / "training.csv").open() as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert {"val_accuracy", "val_eer", "epoch_seconds"} <= set(rows_a[0])

    train_softmax(first, SoftmaxConfig(**TINY, epochs=3), progress=False)
    assert _epochs(first / "softmax" / "training.csv") == [0, 1, 2]
    assert json.loads((first / "softmax" / "state.json").read_text())["epoch"] == 3

    triplet_best = train_triplet(first, TripletConfig(**TINY, epochs=2), progress=False)
    with (first / "triplet" / "training.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and 0.0 <= float(rows[0]["active_triplets"]) <= 1.0 and "val_eer" in rows[0]
    model = load_model(triplet_best)
    assert model.output_shape == (None, 32)


def test_triplet_refuses_mismatched_softmax(feature_cache, tmp_path):
    working_dir = _copy(feature_cache, tmp_path / "wd")
    train_softmax(working_dir, SoftmaxConfig(**TINY, epochs=1), progress=False)
    from deep_speaker.errors import CheckpointError

    with pytest.raises(CheckpointError, match="other shapes"):
        train_triplet(working_dir, TripletConfig(**{**TINY, "width": 0.125}, epochs=1), progress=False)


def test_cli_training_survives_kill_9(feature_cache, tmp_path):
    working_dir = _copy(feature_cache, tmp_path / "wd")
    flags = ["--validation_fraction", "0.4", "--width", "0.0625", "--embedding_dim", "32", "--batch_size", "12", "--num_frames", "40", "--steps_per_epoch", "2", "--quiet"]
    command = [sys.executable, str(ROOT / "cli.py"), "train-softmax", "--working_dir", str(working_dir), *flags]
    process = subprocess.Popen([*command, "--epochs", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = working_dir / "softmax" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["epoch"] >= 2):
        time.sleep(0.2)
    process.kill()
    process.wait()
    done = json.loads(state.read_text())["epoch"]
    assert done >= 2
    result = subprocess.run([*command, "--epochs", str(done + 1)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    epochs = _epochs(working_dir / "softmax" / "training.csv")
    assert sorted(set(epochs)) == list(range(done + 1))
    assert json.loads(state.read_text())["epoch"] == done + 1


def test_models_carry_the_cache_features_and_other_features_are_refused(tmp_path):
    from deep_speaker.errors import CheckpointError
    from deep_speaker.features import FeatureConfig
    from deep_speaker.models import feature_config_of

    corpus = write_corpus(tmp_path / "corpus", speakers=4, utterances=5)
    log_dir, linear_dir = tmp_path / "log", tmp_path / "linear"
    build_feature_cache(corpus, log_dir, FeatureConfig(energies="log"), workers=1, progress=False)
    build_feature_cache(corpus, linear_dir, workers=1, progress=False)
    log_softmax = train_softmax(log_dir, SoftmaxConfig(**TINY, epochs=1), progress=False)
    assert feature_config_of(load_model(log_softmax)).energies == "log"
    with pytest.raises(CheckpointError, match="the model takes log filterbank energies"):
        train_triplet(linear_dir, TripletConfig(**TINY, epochs=1), initial_checkpoint=log_softmax, progress=False)


def test_mask_spans_zeroes_one_band_and_one_span_per_crop():
    from deep_speaker.training import mask_spans

    crops = np.ones((50, 40, 64, 1), np.float32)
    mask_spans(crops, np.random.default_rng(0), max_bands=8, max_frames=10)
    for crop in crops[..., 0]:
        zero_bands = np.flatnonzero((crop == 0).all(axis=0))
        zero_frames = np.flatnonzero((crop == 0).all(axis=1))
        assert zero_bands.size <= 8 and zero_frames.size <= 10
        for run in (zero_bands, zero_frames):
            assert run.size == 0 or run[-1] - run[0] == run.size - 1
        kept = np.ones_like(crop, bool)
        kept[:, zero_bands] = False
        kept[zero_frames] = False
        assert (crop[kept] == 1).all()
    assert (crops == 0).any()


def test_amsoftmax_pretraining_gives_a_unit_embedding_model(feature_cache, tmp_path):
    import keras

    from deep_speaker.layers import CosineLogits

    working_dir = _copy(feature_cache, tmp_path / "wd")
    best = train_softmax(working_dir, SoftmaxConfig(**TINY, epochs=1, loss="amsoftmax", spec_augment=True), progress=False)
    assert isinstance(keras.saving.load_model(working_dir / "softmax" / "last.keras").get_layer("dense"), CosineLogits)
    embeddings = load_model(best).predict(np.random.default_rng(0).standard_normal((3, 40, 64, 1)).astype("float32"), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    with pytest.raises(Exception, match="unknown softmax loss 'hinge'"):
        train_softmax(_copy(feature_cache, tmp_path / "wd2"), SoftmaxConfig(**TINY, epochs=1, loss="hinge"), progress=False)
