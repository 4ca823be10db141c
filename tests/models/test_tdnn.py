"""x-vector and ECAPA-TDNN backbones: the published sizes, any width, taps, and the whole API."""

import numpy as np
import pytest

from deep_speaker.errors import ConfigError
from deep_speaker.models import build_backbone, build_speaker_model
from tests.helpers import synthetic_speech


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,bands,options,parameters",
    [
        ("ecapa_tdnn", 80, {}, 6.2e6),  # the paper's C = 512 model
        ("ecapa_tdnn", 80, {"channels": (1024, 1024, 1024, 1024, 3072)}, 20.8e6),  # SpeechBrain's VoxCeleb model
        ("xvector", 24, {}, 4.2e6),  # Kaldi / SpeechBrain x-vector
    ],
)
def test_published_sizes(name, bands, options, parameters):
    assert build_backbone(name, bands, **options).count_params() == pytest.approx(parameters, rel=0.01)


@pytest.mark.parametrize("name", ["xvector", "ecapa_tdnn"])
@pytest.mark.parametrize("width", [0.125, 0.25])
def test_width_scales_channels_and_taps_have_their_shapes(name, width):
    backbone = build_backbone(name, 64, width=width, embedding_dim=24)
    frames = backbone.output["frames"].shape[-1]
    assert backbone.output["embedding"].shape[-1] == 24
    assert frames == (int(round(1500 * width)) if name == "xvector" else int(round(1536 * width / 8)) * 8)
    embedding = build_speaker_model(backbone).predict(synthetic_speech(0.6)[None], verbose=0)
    assert embedding.shape == (1, 24) and abs(np.linalg.norm(embedding) - 1) < 1e-5


def test_bad_layouts_are_refused():
    with pytest.raises(ConfigError, match="one entry per"):
        build_backbone("ecapa_tdnn", channels=(64, 64), kernel_sizes=(5,), dilations=(1,))
    with pytest.raises(ConfigError, match="width must be positive"):
        build_backbone("xvector", width=0)
