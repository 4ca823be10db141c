"""Augmented copies in the cache: seeded, resumable, training-only, speed copies as their own classes."""

import numpy as np
import pytest

from deep_speaker.data.augment import WaveformAugmentation
from deep_speaker.data.copies import build_augmented_copies, read_augmented_copies
from deep_speaker.data.split import SpeakerFeatures
from deep_speaker.errors import CacheError

NOISY = WaveformAugmentation(noise_probability=1.0, reverb_probability=0.5, channel_probability=0.0)


def test_copies_are_seeded_resumable_and_refuse_other_settings(working_dir):
    assert build_augmented_copies(working_dir, 2, NOISY, speeds=(1.0, 1.1), workers=1, progress=False) == 40
    rows = read_augmented_copies(working_dir)
    assert len(rows) == 40 and {r["speed"] for r in rows} == {1.0, 1.1}
    first = np.load(rows[0]["feature_path"])
    original = np.load(working_dir / "features" / f"{rows[0]['utterance_id']}.npy")
    assert first.shape[1] == 64 and first.shape[0] == original.shape[0] and not np.allclose(first, original)
    rows[1]["feature_path"].unlink()
    assert build_augmented_copies(working_dir, 2, NOISY, speeds=(1.0, 1.1), workers=1, progress=False) == 1
    np.testing.assert_array_equal(np.load(rows[0]["feature_path"]), first)
    with pytest.raises(CacheError, match="augmented copies were made with other settings"):
        build_augmented_copies(working_dir, 3, NOISY, workers=1, progress=False)


def test_training_set_gains_copies_of_training_utterances_only(working_dir):
    plain = SpeakerFeatures(working_dir, 0.4)
    with pytest.raises(CacheError, match="no augmented copies"):
        SpeakerFeatures(working_dir, 0.4, augmented_copies=True)
    build_augmented_copies(working_dir, 2, NOISY, speeds=(1.0, 0.9), workers=1, progress=False)
    data = SpeakerFeatures(working_dir, 0.4, augmented_copies=True)
    np.testing.assert_array_equal(data.validation, plain.validation)
    assert len(data.train) == 3 * len(plain.train) and data.num_classes == 2 * len(data.speakers)
    copies = data.train[len(plain.train) :]
    assert set(data.labels[copies]) == set(plain.labels[plain.train]) | set(plain.labels[plain.train] + len(data.speakers))


def test_cli_augments_the_cache_and_training_uses_the_copies(working_dir, capsys):
    from deep_speaker.tf.train import train_classifier
    from tests.helpers import cli_in_process, tiny_recipe

    result = cli_in_process(
        capsys, "augment-cache", "--working_dir", working_dir, "--copies", "1", "--speed_perturbation", "--workers", "1"
    )
    assert result.returncode == 0 and "20 augmented copies computed" in result.stdout
    train_classifier(working_dir, tiny_recipe(epochs=1, cached_copies=True), progress=False)
    import keras

    assert keras.saving.load_model(working_dir / "softmax" / "last.keras").output_shape == (None, 4)  # only speed 1.0 in one copy
