"""The backbone contract: a new backbone is one builder and one registry line, and the whole API uses it."""

import keras
import numpy as np
import pytest

from deep_speaker.config import load_recipe
from deep_speaker.data.cache import build_feature_cache
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import ConfigError
from deep_speaker.layers import TemporalAverage
from deep_speaker.models import BACKBONES, build_backbone, register_backbone
from deep_speaker.models.registry import check_backbone
from deep_speaker.tf.train import train_classifier
from tests.helpers import write_corpus


@pytest.fixture
def toy_backbone():
    @register_backbone("toy")
    def build_toy(num_fbanks=64, width=1.0, embedding_dim=8, dropout=0.0, name="backbone"):
        features = keras.Input((None, num_fbanks))
        frames = keras.layers.Dense(max(1, int(16 * width)), activation="relu", name="frames")(features)
        embedding = keras.layers.Dense(embedding_dim, name="embedding")(TemporalAverage()(frames))
        return keras.Model(features, {"frames": frames, "embedding": embedding}, name=name)

    yield "toy"
    BACKBONES.pop("toy")


def test_toy_backbone_trains_saves_loads_and_embeds(toy_backbone, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=4)
    build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    recipe = load_recipe(
        "classification",
        model=toy_backbone,
        embedding_dim=8,
        batch_size=6,
        num_frames=40,
        epochs=2,
        steps_per_epoch=2,
        validation_fraction=0.5,
    )
    best = train_classifier(tmp_path / "wd", recipe, progress=False)
    encoder = SpeakerEncoder(best)
    embedding = encoder.embed(next(corpus.rglob("*.flac")))
    assert embedding.shape == (8,) and abs(np.linalg.norm(embedding) - 1) < 1e-5
    assert encoder.speaker_model.get_layer("backbone").get_layer("frames").output.shape[-1] == 16


def test_unknown_backbone_and_broken_contract(toy_backbone):
    with pytest.raises(ConfigError, match=r"unknown model 'lstm'; choose from \[.*'rescnn'.*'toy'"):
        build_backbone("lstm")
    with pytest.raises(ConfigError, match="model 'toy'.*unexpected keyword argument 'depth'"):
        build_backbone("toy", depth=3)
    features = keras.Input((None, 64))
    with pytest.raises(ConfigError, match="returns a dict with exactly the taps"):
        check_backbone(keras.Model(features, keras.layers.Dense(4)(TemporalAverage()(features))))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registered_backbone_passes_the_saving_harness(name, tmp_path):
    """Built small, wrapped as a speaker model, saved and reloaded: same config, same embeddings."""
    from deep_speaker.checkpoints import save_model
    from deep_speaker.model_files import load_model
    from deep_speaker.models import build_speaker_model
    from tests.helpers import synthetic_speech

    model = build_speaker_model(build_backbone(name, width=0.0625, embedding_dim=16))
    waveform = synthetic_speech(1.0)[None]
    save_model(model, tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    assert reloaded.get_layer("backbone").to_json() == model.get_layer("backbone").to_json()
    np.testing.assert_allclose(reloaded.predict(waveform, verbose=0), model.predict(waveform, verbose=0), atol=1e-6)
