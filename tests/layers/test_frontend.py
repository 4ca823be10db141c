"""Fbank: the front end in the graph equals the NumPy oracle for every recipe, and passes gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deep_speaker.audio import load_speech
from deep_speaker.errors import ConfigError
from deep_speaker.features import ENERGY_SCALES, NORMALISATIONS, FeatureConfig, compute_features
from deep_speaker.layers import Fbank
from tests.helpers import synthetic_speech, tiny_model

RECIPES = [FeatureConfig(energies=e, normalisation=n) for e in ENERGY_SCALES for n in NORMALISATIONS]


def _fbank(config: FeatureConfig, signal: np.ndarray, precision: str = "float64") -> np.ndarray:
    layer = Fbank(config.sample_rate, config.num_fbanks, config.trim, config.energies, config.normalisation, precision)
    return keras.ops.convert_to_numpy(layer(signal[None]))[0]


@pytest.mark.parametrize("config", RECIPES, ids=lambda c: f"{c.energies}-{c.normalisation}")
@pytest.mark.parametrize("length", [100, 400, 401, 560, 16000, 23456])
def test_matches_numpy_features_on_synthetic_signals(config, length):
    signal = synthetic_speech(2.0)[:length] + np.float32(1e-3)
    expected = compute_features(signal, config)
    ours = _fbank(config, signal)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("config", RECIPES, ids=lambda c: f"{c.energies}-{c.normalisation}")
def test_matches_numpy_features_on_real_speech(shared_data, config):
    files = sorted((shared_data / "samples").rglob("*.wav")) + sorted((shared_data / "samples").glob("*.flac"))
    files += sorted((shared_data / "speechocean762" / "dev").rglob("*.flac"))[:6]
    assert len(files) >= 10
    for path in files:
        speech = load_speech(path)
        np.testing.assert_allclose(_fbank(config, speech), compute_features(speech, config), atol=1e-4, rtol=0, err_msg=str(path))


def test_float32_precision_is_close_for_linear_energies():
    signal = synthetic_speech(1.5)
    config = FeatureConfig()
    np.testing.assert_allclose(_fbank(config, signal, "float32"), compute_features(signal, config), atol=1e-4)


def test_batches_rows_independently_and_any_length():
    signals = np.stack([synthetic_speech(1.0, pitch=p) for p in (100, 180)])
    config = FeatureConfig(energies="log", normalisation="utterance")
    batch = keras.ops.convert_to_numpy(Fbank(energies="log", normalisation="utterance")(signals))
    for row, signal in zip(batch, signals):
        np.testing.assert_allclose(row, compute_features(signal, config), atol=1e-4)


def test_config_is_the_feature_recipe_and_is_checked():
    layer = Fbank(energies="log", normalisation="utterance", trim="energy")
    assert layer.feature_config == FeatureConfig(trim="energy", energies="log", normalisation="utterance")
    config = layer.get_config()
    assert Fbank.from_config(config).get_config() == config
    with pytest.raises(ConfigError, match="unknown filterbank energies 'cubic'"):
        Fbank(energies="cubic")
    with pytest.raises(ConfigError, match="unknown front-end precision"):
        Fbank(precision="float16")


def test_gradient_of_the_embedding_reaches_the_waveform():
    model = tiny_model(features=FeatureConfig(energies="log", normalisation="utterance"))
    waveform = tf.constant(synthetic_speech(1.0)[None])
    with tf.GradientTape() as tape:
        tape.watch(waveform)
        embedding = model(waveform)
        target = tf.reduce_sum(embedding * tf.one_hot(0, embedding.shape[-1]))
    gradient = tape.gradient(target, waveform).numpy()
    assert gradient.shape == waveform.shape
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0
