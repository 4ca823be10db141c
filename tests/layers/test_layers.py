"""Every registered layer of the toolkit passes one serialisation harness; values of the small layers."""

import keras
import numpy as np
import pytest

from deep_speaker import layers as toolkit_layers
from deep_speaker.errors import ConfigError
from deep_speaker.layers import (
    AttentiveStatsPooling,
    ChannelSplit,
    CosineLogits,
    EmbeddingFusion,
    Fbank,
    FeatureSpec,
    L2Normalize,
    PartialAverage,
    PartialWindows,
    ReflectPadding1D,
    ScoreFusion,
    SqueezeExcitation,
    StatsPooling,
    TemporalAverage,
)

# One configured instance and one input for each registered layer class.
CASES = {
    Fbank: (
        Fbank(energies="log", normalisation="utterance"),
        np.full((2, 2000), 0.1, "float32") + np.sin(np.arange(2000, dtype="float32")),
    ),
    FeatureSpec: (FeatureSpec({"energies": "log"}), np.ones((2, 5, 3), "float32")),
    TemporalAverage: (TemporalAverage(), np.ones((2, 5, 3), "float32")),
    StatsPooling: (StatsPooling(epsilon=1e-3), np.arange(30, dtype="float32").reshape(2, 5, 3)),
    L2Normalize: (L2Normalize(epsilon=1e-9), np.arange(6, dtype="float32").reshape(2, 3) + 1),
    CosineLogits: (CosineLogits(7), np.arange(6, dtype="float32").reshape(2, 3) + 1),
    EmbeddingFusion: (EmbeddingFusion("score", 0.3, True, "abc"), [np.eye(2, 3, dtype="float32"), np.eye(2, 4, dtype="float32")]),
    AttentiveStatsPooling: (AttentiveStatsPooling(4), np.random.default_rng(0).standard_normal((2, 7, 6)).astype("float32")),
    ReflectPadding1D: (ReflectPadding1D(2, 1), np.arange(30, dtype="float32").reshape(2, 5, 3)),
    ChannelSplit: (ChannelSplit(2), np.arange(24, dtype="float32").reshape(2, 3, 4)),
    SqueezeExcitation: (SqueezeExcitation(3), np.random.default_rng(1).standard_normal((2, 5, 6)).astype("float32")),
    ScoreFusion: (ScoreFusion([3.0, 1.0]), [np.eye(2, 3, dtype="float32"), np.eye(2, 4, dtype="float32")]),
    PartialWindows: (PartialWindows(4, 2), np.arange(2 * 9 * 3, dtype="float32").reshape(2, 9, 3)),
    PartialAverage: (PartialAverage(), [np.arange(2 * 3, dtype="float32").reshape(2, 3), np.ones((2, 9, 3), "float32")]),  # one window each
}


def test_every_layer_class_has_a_case():
    registered = {cls for cls in vars(toolkit_layers).values() if isinstance(cls, type) and issubclass(cls, keras.layers.Layer)}
    assert registered == set(CASES)


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_serialisation_harness(cls, tmp_path):
    layer, x = CASES[cls]
    config = layer.get_config()
    assert cls.from_config(config).get_config() == config
    inputs = [keras.Input(a.shape[1:]) for a in x] if isinstance(x, list) else keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    expected = model.predict(x, verbose=0)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).get_config() == config
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_l2_normalize_and_average():
    x = np.array([[[3.0, 4.0], [1.0, 0.0]]], np.float32)
    np.testing.assert_allclose(TemporalAverage()(x), [[2.0, 2.0]])
    np.testing.assert_allclose(L2Normalize()(x[:, 0]), [[0.6, 0.8]], rtol=1e-6)


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
    with pytest.raises(ConfigError, match="unknown fusion"):
        EmbeddingFusion("sum")


def test_reflect_padding_and_channel_split_values():
    x = np.arange(10, dtype="float32").reshape(1, 5, 2)
    np.testing.assert_array_equal(ReflectPadding1D(2, 1)(x), np.pad(x, [(0, 0), (2, 1), (0, 0)], mode="reflect"))
    first, second = ChannelSplit(2)(x)
    np.testing.assert_array_equal(first, x[..., :1])
    np.testing.assert_array_equal(second, x[..., 1:])


def test_attentive_pooling_with_flat_attention_is_statistics_pooling():
    x = np.random.default_rng(0).standard_normal((2, 9, 4)).astype("float32")
    layer = AttentiveStatsPooling(3)
    layer(x)
    layer.conv.set_weights([np.zeros_like(w) for w in layer.conv.get_weights()])  # equal scores: uniform weights
    expected = np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_squeeze_excitation_gates_channels_within_zero_and_one():
    x = np.abs(np.random.default_rng(2).standard_normal((2, 5, 6))).astype("float32") + 0.1
    out = keras.ops.convert_to_numpy(SqueezeExcitation(3)(x))
    ratio = out / x
    assert np.all((ratio > 0) & (ratio < 1))
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-5)  # one gate per channel, all frames
