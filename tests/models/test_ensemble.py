"""Ensembles of trained speaker models: one front end, score fusion in one dot product, saved and loaded whole."""

import keras
import numpy as np
import pytest

from deep_speaker.errors import ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.layers import ScoreFusion
from deep_speaker.model_files import load_model
from deep_speaker.models.ensemble import build_ensemble
from tests.helpers import synthetic_speech, tiny_model


def _waves() -> np.ndarray:
    return np.stack([synthetic_speech(1.2, pitch=pitch, seed=seed) for seed, pitch in enumerate((110, 180, 240))]).astype("float32")


def test_the_ensemble_cosine_is_the_weighted_sum_of_the_members_cosines(tmp_path):
    keras.utils.set_random_seed(0)
    first, second = tiny_model(embedding_dim=16), tiny_model(backbone="xvector", width=0.0625, embedding_dim=24)
    ensemble = build_ensemble([first, second], weights=[3, 1])
    waves = _waves()
    fused, a, b = (np.asarray(model.predict(waves, verbose=0)) for model in (ensemble, first, second))
    assert fused.shape == (3, 40) and np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    expected = 0.75 * (a @ a.T) + 0.25 * (b @ b.T)
    np.testing.assert_allclose(fused @ fused.T, expected, atol=1e-5)

    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    np.testing.assert_allclose(np.asarray(load_model(path).predict(waves, verbose=0)), fused, atol=1e-6)


def test_members_must_share_the_front_end_and_weights_must_fit():
    linear, log = tiny_model(), tiny_model(features=FeatureConfig(energies="log", normalisation="utterance"))
    with pytest.raises(ConfigError, match="must compute the same features"):
        build_ensemble([linear, log])
    with pytest.raises(ConfigError, match="two or more models"):
        build_ensemble([linear])
    with pytest.raises(ConfigError, match="2 models but 3 weights"):
        build_ensemble([linear, tiny_model()], weights=[1, 1, 1])
    with pytest.raises(ConfigError, match="positive weights"):
        ScoreFusion([1.0, 0.0])


def test_the_ensemble_command_writes_a_loadable_model_and_refuses_a_bad_target(tmp_path, capsys):
    from tests.helpers import cli_in_process, save_tiny_model

    first, second = save_tiny_model(tmp_path / "a.keras"), save_tiny_model(tmp_path / "b.keras", embedding_dim=8)
    result = cli_in_process(capsys, "ensemble", first, second, tmp_path / "fused.keras", "--weights", "2", "1")
    assert result.returncode == 0 and "2 models fused" in result.stdout
    assert load_model(tmp_path / "fused.keras").output_shape == (None, 24)
    refused = cli_in_process(capsys, "ensemble", first, second, tmp_path / "fused.h5")
    assert refused.returncode != 0 and "fused.h5" in refused.stderr
