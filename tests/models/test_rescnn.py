import keras
import numpy as np
import pytest

from deep_speaker.models import build_backbone
from tests.helpers import tiny_model


@pytest.mark.slow
def test_full_model_matches_reference_layout():
    backbone = build_backbone("rescnn")
    assert backbone.count_params() == 24_185_728
    bn_statistics = sum(int(np.prod(w.shape)) for w in backbone.non_trainable_weights)
    assert bn_statistics == 13_440
    names = {layer.name for layer in backbone.layers}
    assert {"conv64-s", "conv64-s_bn", "res1_0_branch_2a", "res4_2_branch_2b_bn", "conv512-s", "affine", "frames"} <= names
    assert backbone.get_layer("affine").kernel.shape == (2048, 512)
    assert backbone.output["frames"].shape[-1] == 2048


@pytest.mark.parametrize("frames", [17, 160, 301])
def test_any_number_of_frames_gives_unit_embeddings(frames):
    model = tiny_model(width=0.125, embedding_dim=512, backbone="rescnn")
    features = np.random.default_rng(0).standard_normal((2, frames, 64)).astype("float32")
    from deep_speaker.models import feature_model

    out = keras.ops.convert_to_numpy(feature_model(model)(features))
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_width_scales_filters_and_dropout_is_optional():
    narrow = build_backbone("rescnn", width=0.0625, embedding_dim=16)
    assert narrow.get_layer("conv4-s").filters == 4 and narrow.get_layer("conv32-s").filters == 32  # named by filters, as the reference
    assert "dropout" not in {layer.name for layer in narrow.layers}
    assert "dropout" in {layer.name for layer in build_backbone("rescnn", width=0.0625, embedding_dim=16, dropout=0.5).layers}
