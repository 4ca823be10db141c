import keras
import numpy as np
import pytest

from deep_speaker.layers import L2Normalize, TemporalAverage
from deep_speaker.features import FeatureConfig
from deep_speaker.models import build_model, build_rescnn, embedding_model_from, feature_config_of


def test_layers_config_round_trip():
    for layer in (TemporalAverage(name="average"), L2Normalize(axis=-1, epsilon=1e-9, name="ln")):
        config = layer.get_config()
        assert layer.__class__.from_config(config).get_config() == config


def test_l2_normalize_and_average():
    x = np.array([[[3.0, 4.0], [1.0, 0.0]]], np.float32)
    np.testing.assert_allclose(TemporalAverage()(x), [[2.0, 2.0]])
    np.testing.assert_allclose(L2Normalize()(x[:, 0]), [[0.6, 0.8]], rtol=1e-6)


@pytest.mark.slow
def test_full_model_matches_reference_layout():
    model = build_rescnn()
    assert model.count_params() == 24_185_728
    bn_statistics = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert bn_statistics == 13_440
    names = {layer.name for layer in model.layers}
    assert {"conv64-s", "conv64-s_bn", "res1_0_branch_2a", "res4_2_branch_2b_bn", "conv512-s", "affine", "ln"} <= names
    assert model.get_layer("affine").kernel.shape == (2048, 512)


@pytest.mark.parametrize("frames", [17, 160, 301])
def test_any_number_of_frames_gives_unit_embeddings(frames):
    model = build_rescnn(width=0.125)
    out = keras.ops.convert_to_numpy(model(np.random.default_rng(0).standard_normal((2, frames, 64, 1)).astype("float32")))
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_width_multiplier_scales_filters():
    model = build_rescnn(width=0.25, embedding_dim=128)
    assert model.get_layer("conv16-s").filters == 16
    assert model.get_layer("conv128-s").filters == 128
    assert model.get_layer("affine").kernel.shape == (512, 128)


def test_softmax_variant_and_embedding_cut():
    softmax = build_rescnn(width=0.125, num_speakers=7)
    assert softmax.output_shape == (None, 7)
    assert softmax.get_layer("dropout").rate == 0.5
    x = np.random.default_rng(1).standard_normal((3, 40, 64, 1)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(softmax(x))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    embedding = embedding_model_from(softmax)
    assert embedding.get_layer("affine") is softmax.get_layer("affine")
    np.testing.assert_allclose(np.linalg.norm(keras.ops.convert_to_numpy(embedding(x)), axis=1), 1.0, rtol=1e-5)


def test_registry():
    assert build_model("rescnn", width=0.125).output_shape == (None, 512)
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose from"):
        build_model("resnet")


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_native_save_round_trip(tmp_path, suffix):
    model = build_rescnn(width=0.125)
    x = np.random.default_rng(2).standard_normal((2, 50, 64, 1)).astype("float32")
    path = tmp_path / f"model{suffix}"
    if suffix == ".keras":
        model.save(path)
        restored = keras.saving.load_model(path)
    else:
        model.save_weights(path)
        restored = build_rescnn(width=0.125)
        restored.load_weights(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)))


def test_model_records_its_features_through_keras_saving(tmp_path):
    log_features = FeatureConfig(energies="log", trim="energy")
    model = build_rescnn(width=0.0625, embedding_dim=16, features=log_features)
    model.save(tmp_path / "log.keras")
    assert feature_config_of(keras.saving.load_model(tmp_path / "log.keras")) == log_features
    assert feature_config_of(embedding_model_from(build_rescnn(width=0.0625, features=log_features, num_speakers=3))) == log_features
    plain = keras.Sequential([keras.Input((None, 64, 1)), keras.layers.GlobalAveragePooling2D()])
    assert feature_config_of(plain) == FeatureConfig()
