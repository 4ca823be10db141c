"""PGD adversarial fine-tuning on a tiny model: the inner attack stays in its ball and hurts; the run saves and resumes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deep_speaker.adversarial import snr_db
from deep_speaker.config import load_recipe
from deep_speaker.errors import ConfigError
from deep_speaker.model_files import load_model
from deep_speaker.tf.adversarial_training import adversarial_finetune, pgd_perturbation
from tests.helpers import save_tiny_model, write_corpus


def test_pgd_stays_within_the_snr_ball_and_raises_the_loss():
    rng = np.random.default_rng(0)
    clean = tf.constant((0.2 * rng.standard_normal((3, 800))).astype("float32"))
    weights = tf.constant(rng.standard_normal((800,)).astype("float32"))

    def loss_of(waveforms):
        return tf.reduce_sum(tf.tanh(waveforms * weights))

    delta = pgd_perturbation(loss_of, clean, snr_db=20.0, steps=5)
    assert [snr_db(c, d) for c, d in zip(clean.numpy(), delta.numpy())] == pytest.approx([20.0] * 3, abs=0.05)
    assert float(loss_of(clean + delta)) > float(loss_of(clean)) + 1.0
    assert np.all(np.abs((clean + delta).numpy()) <= 1)


@pytest.mark.slow
def test_fine_tuning_changes_the_model_saves_a_speaker_model_and_resumes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=2)
    keras.utils.set_random_seed(0)
    base = save_tiny_model(tmp_path / "base.keras")
    recipe = load_recipe("adversarial", epochs=2, steps_per_epoch=1, batch_size=4, seconds=0.5, pgd_steps=2, learning_rate=1e-2)
    out = adversarial_finetune(tmp_path, base, corpus, recipe, progress=False)
    robust = load_model(out)
    changed = [not np.allclose(a, b) for a, b in zip(load_model(base).get_weights(), robust.get_weights())]
    assert any(changed)
    weights = [w.copy() for w in robust.get_weights()]
    rows = (tmp_path / "adversarial" / "training.csv").read_text().splitlines()
    assert "loss" in rows[0].split(",") and len(rows) == 3  # one row per epoch, from the one driver
    adversarial_finetune(tmp_path, base, corpus, recipe, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(weights, load_model(out).get_weights()))  # finished: restored, not retrained


def test_a_bad_recipe_is_refused_before_training(tmp_path):
    base = save_tiny_model(tmp_path / "base.keras")
    with pytest.raises(ConfigError, match="pgd_steps must be 1 to 1000"):
        adversarial_finetune(tmp_path, base, tmp_path, load_recipe("adversarial", pgd_steps=0), progress=False)
    with pytest.raises(ConfigError, match="not one of"):
        load_recipe("adversarial", loss="softmax")
    assert not (tmp_path / "adversarial").exists()
