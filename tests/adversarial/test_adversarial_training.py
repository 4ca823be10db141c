"""PGD adversarial fine-tuning on a tiny model: the inner attack stays in its ball and hurts; the run saves and resumes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deep_speaker.adversarial import snr_db
from deep_speaker.errors import CheckpointError
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
    out, run = tmp_path / "robust.keras", tmp_path / "run"
    adversarial_finetune(
        base, corpus, out, run, steps=2, batch=4, seconds=0.5, pgd_steps=2, learning_rate=1e-2, save_every=1, progress=False
    )
    robust = load_model(out)
    changed = [not np.allclose(a, b) for a, b in zip(load_model(base).get_weights(), robust.get_weights())]
    assert any(changed)
    weights = [w.copy() for w in robust.get_weights()]
    adversarial_finetune(base, corpus, out, run, steps=2, batch=4, seconds=0.5, pgd_steps=2, learning_rate=1e-2, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(weights, load_model(out).get_weights()))  # finished: restored, not retrained


def test_an_output_name_that_cannot_be_saved_is_refused_before_training(tmp_path):
    base = save_tiny_model(tmp_path / "base.keras")
    with pytest.raises(CheckpointError, match="ending in .keras"):
        adversarial_finetune(base, tmp_path, tmp_path / "robust.h5", tmp_path / "run", steps=1, progress=False)
    assert not (tmp_path / "run").exists()
