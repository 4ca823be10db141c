"""The one training driver: classification, triplet and head phases, resume, reproducibility, refusals."""

import csv
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import keras
import numpy as np
import pytest

from deep_speaker.assembly import load_teacher
from deep_speaker.data.cache import read_manifest
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.layers import CosineLogits
from deep_speaker.model_files import load_model
from deep_speaker.model_home import user_home
from deep_speaker.models import feature_config_of, feature_model
from deep_speaker.tf.distribute import is_chief
from deep_speaker.tf.train import train_classifier, train_head, train_triplet
from tests.helpers import ROOT, feature_cache, save_tiny_model, synthetic_speech, tiny_recipe


def _rows(path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_classification_then_triplet_resume_and_reproducibility(tiny_cache, tmp_path):
    first, second = shutil.copytree(tiny_cache, tmp_path / "a"), shutil.copytree(tiny_cache, tmp_path / "b")
    best = train_classifier(first, tiny_recipe(epochs=2), progress=False)
    train_classifier(second, tiny_recipe(epochs=2), progress=False)
    assert load_model(best).get_layer("backbone").get_layer("frames").units == 16
    assert best.is_file() and (first / "softmax" / "last.keras").is_file()
    rows_a, rows_b = _rows(first / "softmax" / "training.csv"), _rows(second / "softmax" / "training.csv")
    assert [r["epoch"] for r in rows_a] == ["0", "1"] and [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert {"val_accuracy", "val_eer", "epoch_seconds"} <= set(rows_a[0])

    train_classifier(first, tiny_recipe(epochs=3), progress=False)
    assert [r["epoch"] for r in _rows(first / "softmax" / "training.csv")] == ["0", "1", "2"]
    assert json.loads((first / "softmax" / "state.json").read_text())["epoch"] == 3

    triplet_best = train_triplet(first, tiny_recipe("triplet", epochs=2), progress=False)
    rows = _rows(first / "triplet" / "training.csv")
    assert len(rows) == 2 and 0.0 <= float(rows[0]["active_triplets"]) <= 1.0 and "val_eer" in rows[0]
    assert load_model(triplet_best).output_shape == (None, 32)


def test_classification_can_keep_the_epoch_with_the_best_held_out_eer(working_dir):
    train_classifier(working_dir, tiny_recipe(epochs=3, select_by="val_eer"), progress=False)
    eers = [float(r["val_eer"]) for r in _rows(working_dir / "softmax" / "training.csv")]
    assert json.loads((working_dir / "softmax" / "state.json").read_text())["best"] == pytest.approx(min(eers))


def test_resume_with_another_recipe_is_refused_and_log_follows_the_resume_point(working_dir):
    train_classifier(working_dir, tiny_recipe(epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"started with other options \(loss.name: 'softmax' -> 'amsoftmax'"):
        train_classifier(working_dir, tiny_recipe(epochs=2, loss="amsoftmax"), progress=False)
    log = working_dir / "softmax" / "training.csv"
    log.write_text(log.read_text() + log.read_text().splitlines()[1].replace("0,", "1,", 1) + "\n")  # a row past the resume point
    state_path = working_dir / "softmax" / "state.json"
    state = json.loads(state_path.read_text())
    del state["recipe"]["run"]["select_by"]  # a run started before this option existed: it had the default
    state_path.write_text(json.dumps(state))
    train_classifier(working_dir, tiny_recipe(epochs=2), progress=False)
    assert [r["epoch"] for r in _rows(log)] == ["0", "1"]


def test_triplet_refuses_mismatched_classifier(working_dir):
    train_classifier(working_dir, tiny_recipe(epochs=1), progress=False)
    with pytest.raises(CheckpointError, match="other shapes"):
        train_triplet(working_dir, tiny_recipe("triplet", epochs=1, width=0.125), progress=False)


@pytest.mark.slow
def test_large_margin_fine_tuning_starts_from_the_checkpoint_and_class_means(working_dir):
    from deep_speaker.data.split import SpeakerFeatures

    first = train_classifier(working_dir, tiny_recipe(epochs=1, loss="aamsoftmax"), progress=False)
    still = tiny_recipe(epochs=1, loss="aamsoftmax", margin=0.3, learning_rate=1e-12)  # fine-tuning that moves nothing
    train_classifier(working_dir, still, progress=False, initial_checkpoint=first, run_name="softmax_lmf")
    trainer = keras.saving.load_model(working_dir / "softmax_lmf" / "last.keras")
    for layer in load_model(first).get_layer("backbone").layers:
        for before, after in zip(layer.get_weights(), trainer.get_layer("backbone").get_layer(layer.name).get_weights()):
            np.testing.assert_allclose(after, before, atol=1e-6)
    data = SpeakerFeatures(working_dir)
    embeddings = feature_model(load_model(first)).predict(data.crops(data.train, still.run.num_frames, None), verbose=0)
    directions = next(layer for layer in trainer.layers if isinstance(layer, CosineLogits)).directions.numpy()
    for speaker in range(data.num_classes):
        mean = embeddings[data.labels[data.train] == speaker].mean(axis=0)
        cosine = mean @ directions[:, speaker] / np.linalg.norm(mean) / np.linalg.norm(directions[:, speaker])
        assert cosine > 0.999
    with pytest.raises(CheckpointError, match="other shapes"):
        train_classifier(working_dir, tiny_recipe(epochs=1, width=0.125), progress=False, initial_checkpoint=first, run_name="other")


@pytest.mark.slow
def test_distillation_learns_the_teachers_embeddings_and_exports_a_plain_model(working_dir, tmp_path):
    teacher = save_tiny_model(tmp_path / "teacher.keras", embedding_dim=8)
    recipe = tiny_recipe(
        epochs=3, steps_per_epoch=6, loss="aamsoftmax", distill_from=str(teacher), distill_weight=10.0, select_by="val_eer"
    )
    with pytest.raises(ConfigError, match="trains with its teacher encoder"):
        train_classifier(working_dir, recipe, progress=False)
    best = train_classifier(working_dir, recipe, progress=False, teacher=load_teacher(recipe))
    teacher_home = user_home(load_teacher(recipe).fingerprint) / "teacher"
    cached = list(teacher_home.glob("*.npy"))  # in the teacher's home, keyed by the cache's recordings
    assert len(cached) == 1 and np.load(cached[0]).shape == (len(read_manifest(working_dir)), 8)
    losses = [float(row["teacher_loss"]) for row in _rows(working_dir / "softmax" / "training.csv")]
    assert losses[-1] < losses[0] and -1.0 <= losses[-1] <= 1.0  # negative cosine to the teacher, improving
    model = load_model(best)
    assert model.output_shape == (None, 32) and all(layer.name != "teacher_projection" for layer in model.get_layer("backbone").layers)
    longer = replace(recipe, run=replace(recipe.run, epochs=4))
    train_classifier(working_dir, longer, progress=False, teacher=load_teacher(recipe))  # resumes the two-output trainer
    assert len(_rows(working_dir / "softmax" / "training.csv")) == 4
    with pytest.raises(ConfigError, match="select_by: val_eer"):
        tiny_recipe(loss="aamsoftmax", distill_from=str(teacher))


def test_models_carry_the_cache_features_and_other_features_are_refused(tmp_path):
    log_dir = feature_cache(tmp_path / "log", features=FeatureConfig(energies="log"))
    linear_dir = feature_cache(tmp_path / "linear")
    with pytest.raises(ConfigError, match=r"the cache holds log filterbank energies .* the recipe asks for linear"):
        train_classifier(log_dir, tiny_recipe(epochs=1), progress=False)  # the recipe's features are the reference's
    assert not (log_dir / "softmax").exists()
    log_model = train_classifier(log_dir, tiny_recipe(epochs=1, energies="log"), progress=False)
    assert feature_config_of(load_model(log_model)).energies == "log"
    with pytest.raises(CheckpointError, match="the model takes log filterbank energies"):
        train_triplet(linear_dir, tiny_recipe("triplet", epochs=1), initial_checkpoint=log_model, progress=False)


def test_amsoftmax_pretraining_with_masking_lowers_the_loss_and_gives_a_unit_embedding_model(working_dir):
    best = train_classifier(working_dir, tiny_recipe(epochs=3, steps_per_epoch=6, loss="amsoftmax", spec_augment=True), progress=False)
    losses = [float(row["loss"]) for row in _rows(working_dir / "softmax" / "training.csv")]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # it learns, not just runs
    assert isinstance(keras.saving.load_model(working_dir / "softmax" / "last.keras").get_layer("dense"), CosineLogits)
    embeddings = load_model(best).predict(np.random.default_rng(0).standard_normal((3, 8000)).astype("float32"), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("head,loss", [("dense", "amsoftmax"), ("tdnn", "triplet")])
def test_train_head_saves_usable_fused_models(working_dir, tmp_path, head, loss):
    base = save_tiny_model(tmp_path / "base.keras", embedding_dim=32)
    recipe = tiny_recipe(
        "head",
        head=head,
        loss=loss,
        embedding_dim=8,
        hidden_units=16,
        tdnn_channels=16,
        crops_per_utterance=2,
        epochs=2,
        finetune_epochs=1 if head == "dense" else 0,
    )
    paths = train_head(working_dir, base, recipe, progress=False)
    assert set(paths) == {"head", "concat", "score"}
    dims = {"head": 8, "concat": 40, "score": 40}
    wav = next((working_dir.parent / "corpus").rglob("*.flac")) if (working_dir.parent / "corpus").exists() else None
    wav = wav or next(working_dir.parents[1].rglob("*.flac"))
    for fusion, path in paths.items():
        embedding = SpeakerEncoder(path).embed(wav)
        assert embedding.shape == (dims[fusion],) and abs(np.linalg.norm(embedding) - 1) < 1e-4
    assert (working_dir / f"head_{head}_{loss}" / "head.json").is_file()


def test_only_the_chief_writes(monkeypatch):
    assert is_chief()
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()


@pytest.mark.slow
def test_resume_reads_the_state_saved_inside_the_checkpoint(working_dir, tmp_path):
    """Killed after last.keras was renamed but before state.json was: the checkpoint's own count wins, so no epoch
    is trained twice and the result is the uninterrupted run's."""
    uninterrupted = shutil.copytree(working_dir, tmp_path / "uninterrupted")
    train_classifier(uninterrupted, tiny_recipe(epochs=3, dropout=0.0), progress=False)
    train_classifier(working_dir, tiny_recipe(epochs=2, dropout=0.0), progress=False)
    state = working_dir / "softmax" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "epoch": 1}))  # the older count
    train_classifier(working_dir, tiny_recipe(epochs=3, dropout=0.0), progress=False)
    assert [int(r["epoch"]) for r in _rows(working_dir / "softmax" / "training.csv")] == [0, 1, 2]
    assert json.loads(state.read_text())["epoch"] == 3
    ours, theirs = (keras.saving.load_model(d / "softmax" / "last.keras").get_weights() for d in (working_dir, uninterrupted))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


@pytest.mark.slow
def test_cli_training_survives_kill_9(working_dir):
    flags = [
        "--validation_fraction",
        "0.4",
        "--width",
        "0.03125",
        "--embedding_dim",
        "32",
        "--batch_size",
        "12",
        "--num_frames",
        "40",
        "--steps_per_epoch",
        "2",
        "--quiet",
    ]
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
    assert [int(r["epoch"]) for r in _rows(working_dir / "softmax" / "training.csv")] == list(range(done + 1))
    assert json.loads(state.read_text())["epoch"] == done + 1


@pytest.mark.slow
def test_aam_softmax_with_margin_warmup_trains_and_resumes(working_dir):
    recipe = tiny_recipe(epochs=2, loss="aamsoftmax", margin_warmup_epochs=2)
    best = train_classifier(working_dir, recipe, progress=False)
    assert load_model(best).output_shape == (None, 32)
    trainer = keras.saving.load_model(working_dir / "softmax" / "last.keras")
    assert trainer.loss.margin == 0.2
    train_classifier(working_dir, tiny_recipe(epochs=3, loss="aamsoftmax", margin_warmup_epochs=2), progress=False)
    assert [r["epoch"] for r in _rows(working_dir / "softmax" / "training.csv")] == ["0", "1", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["xvector", "ecapa_tdnn"])
def test_tdnn_backbones_train_with_aam_softmax(working_dir, model):
    recipe = tiny_recipe(epochs=3, steps_per_epoch=6, model=model, width=0.125, loss="aamsoftmax")
    best = train_classifier(working_dir, recipe, progress=False)
    losses = [float(row["loss"]) for row in _rows(working_dir / "softmax" / "training.csv")]
    assert losses[-1] < losses[0], losses
    embedding = SpeakerEncoder(best).embed(synthetic_speech(1.0))
    assert embedding.shape == (32,) and abs(np.linalg.norm(embedding) - 1) < 1e-5


def test_classification_with_waveform_augmentation_trains(working_dir, shared_data):
    recipe = tiny_recipe(
        epochs=1, waveform=True, speed_perturbation=True, noise_dir=str(shared_data / "noise"), rir_dir=str(shared_data / "rir"), workers=2
    )
    best = train_classifier(working_dir, recipe, progress=False)
    trainer = keras.saving.load_model(working_dir / "softmax" / "last.keras")
    assert trainer.output_shape == (None, 3 * 4)  # four speakers at three speeds
    assert load_model(best).output_shape == (None, 32)
