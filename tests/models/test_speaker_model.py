"""Speaker models: front end + backbone + L2 (+ head); identity by fingerprint; refusal of bad heads."""

import keras
import numpy as np
import pytest

from deep_speaker.checkpoints import save_model
from deep_speaker.errors import CheckpointError
from deep_speaker.features import FeatureConfig, compute_features
from deep_speaker.model_files import load_model
from deep_speaker.models import feature_config_of, feature_model, model_fingerprint
from deep_speaker.models.heads import build_dense_head, build_head
from deep_speaker.models.speaker_model import backbone_of, base_of, build_fused, weights_fingerprint
from tests.helpers import synthetic_speech, tiny_model


def test_waveform_in_equals_features_in():
    config = FeatureConfig(energies="log", normalisation="utterance")
    model = tiny_model(features=config)
    signal = synthetic_speech(1.2)
    from_waveform = model.predict(signal[None], verbose=0)
    from_features = feature_model(model).predict(compute_features(signal, config)[None], verbose=0)
    np.testing.assert_allclose(from_waveform, from_features, atol=1e-5)
    assert feature_config_of(model) == config


def test_fingerprint_survives_resave_and_changes_with_weights_or_recipe(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "a.keras")
    assert model_fingerprint(load_model(tmp_path / "a.keras")) == model_fingerprint(model)
    other_recipe = tiny_model(features=FeatureConfig(energies="log"))
    other_recipe.set_weights(model.get_weights())
    assert model_fingerprint(other_recipe) != model_fingerprint(model)
    affine = backbone_of(model).get_layer("affine")
    affine.set_weights([w + 1 for w in affine.get_weights()])
    assert model_fingerprint(model) != model_fingerprint(load_model(tmp_path / "a.keras"))


@pytest.mark.parametrize("head_type", ["dense", "tdnn"])
def test_heads_attach_to_their_tap(head_type):
    model = tiny_model(embedding_dim=32)
    head = build_head(
        head_type, backbone_of(model), embedding_dim=8, **({"hidden_units": (16, 16)} if head_type == "dense" else {"channels": 16})
    )
    fused = build_fused(model, head, "concat", trained=True)
    out = fused.predict(synthetic_speech(1.0)[None], verbose=0)
    assert out.shape == (1, 40) and abs(np.linalg.norm(out) - 1) < 1e-5
    features_in = feature_model(fused).predict(compute_features(synthetic_speech(1.0))[None], verbose=0)
    np.testing.assert_allclose(features_in, out, atol=1e-5)


def test_untrained_or_mismatched_head_is_refused(tmp_path):
    model = tiny_model(embedding_dim=32)
    head = build_dense_head(32, (16, 16), 8)
    save_model(build_fused(model, head, "concat", trained=False), tmp_path / "untrained.keras")
    with pytest.raises(CheckpointError, match="untrained.keras: its refinement head was never trained"):
        load_model(tmp_path / "untrained.keras")
    fused = build_fused(model, head, "concat", trained=True)
    affine = backbone_of(model).get_layer("affine")
    affine.set_weights([w + 1.0 for w in affine.get_weights()])
    save_model(fused, tmp_path / "mismatched.keras")
    with pytest.raises(CheckpointError, match="mismatched.keras: the head was trained on base weights"):
        load_model(tmp_path / "mismatched.keras")
    fused.get_layer("fusion").base_fingerprint = weights_fingerprint(base_of(fused))
    save_model(fused, tmp_path / "good.keras")
    assert load_model(tmp_path / "good.keras").output_shape == (None, 40)


def test_a_keras_model_that_is_not_a_speaker_model_is_refused(tmp_path):
    inputs = keras.Input((None, 64))
    keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(inputs)).save(tmp_path / "other.keras")
    with pytest.raises(CheckpointError, match="other.keras: not a deep-speaker speaker model"):
        load_model(tmp_path / "other.keras")
