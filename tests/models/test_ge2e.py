"""GE2E (Resemblyzer) in Keras: partial windows, and the converted published weights reproducing Resemblyzer."""

import keras
import numpy as np
import pytest

from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.frontends.resemblyzer import partial_grid_length, resemblyzer_mel, slaney_mel_filterbank
from deep_speaker.importers import read_torch_checkpoint
from deep_speaker.importers.resemblyzer import ge2e_weights
from deep_speaker.layers.partials import PartialAverage, PartialWindows
from deep_speaker.models import build_backbone


@pytest.mark.parametrize("frames,windows", [(100, 1), (160, 1), (236, 1), (237, 2), (730, 8)])
def test_partial_windows_are_every_full_window_at_the_step(frames, windows):
    features = np.arange(2 * frames * 3, dtype="float32").reshape(2, frames, 3)
    folded = np.asarray(PartialWindows(160, 77)(features))
    assert folded.shape == (2 * windows, 160, 3)
    padded = np.pad(features, [(0, 0), (0, max(0, 160 - frames)), (0, 0)])
    for window in range(windows):
        np.testing.assert_array_equal(folded[1 * windows + window], padded[1, 77 * window : 77 * window + 160])
    means = np.asarray(PartialAverage()([folded[:, 0, :], features]))
    np.testing.assert_allclose(means[1], folded[windows:, 0, :].mean(axis=0))


def test_the_converted_published_encoder_reproduces_resemblyzer(pytorch_fixtures):
    expected = np.load(pytorch_fixtures / "resemblyzer" / "expected.npz")
    backbone = build_backbone("ge2e", 40)
    ge2e_weights(backbone, read_torch_checkpoint(pytorch_fixtures / "resemblyzer" / "pretrained.pt")["model_state"], "pretrained.pt")
    mel = resemblyzer_mel(expected["preprocessed_0"])
    np.testing.assert_allclose(mel, expected["mel_0"], atol=1e-6)
    partials = keras.Model(backbone.input, backbone.get_layer("partial_ln").output).predict(mel[None], verbose=0)
    np.testing.assert_allclose(partials, expected["partials_0"], atol=1e-4)
    embedding = backbone.predict(mel[None], verbose=0)["embedding"][0]
    np.testing.assert_allclose(embedding / np.linalg.norm(embedding), expected["utterance_0"], atol=1e-4)


def test_a_state_dict_of_another_model_is_refused():
    backbone = build_backbone("ge2e", 40, width=0.25)
    with pytest.raises(CheckpointError, match="not a GE2E"):
        ge2e_weights(backbone, {"linear.weight": np.zeros((256, 256))}, "other.pt")
    state = {
        f"lstm.{kind}_l{i}": np.zeros((1024, 40 if (kind == "weight_ih" and i == 0) else 256))
        for i in range(3)
        for kind in ("weight_ih", "weight_hh")
    }
    state.update({f"lstm.bias_{kind}_l{i}": np.zeros(1024) for i in range(3) for kind in ("ih", "hh")})
    state.update({"linear.weight": np.zeros((256, 256)), "linear.bias": np.zeros(256)})
    with pytest.raises(CheckpointError, match=r"wide.pt: does not match the model; .* with other shapes: lstm_0 \(model \[\(40, 256\)"):
        ge2e_weights(backbone, state, "wide.pt")


def test_the_front_end_matches_librosa_and_pads_to_the_partial_grid():
    import librosa

    from deep_speaker.layers import Fbank

    np.testing.assert_allclose(slaney_mel_filterbank(40), librosa.filters.mel(sr=16000, n_fft=400, n_mels=40), atol=1e-8)
    layer = Fbank(num_fbanks=40, trim="resemblyzer", kind="resemblyzer")
    for samples in (1000, 25600, 30240, 37000, 50880):
        wave = np.random.default_rng(samples).standard_normal(samples).astype("float32") * 0.1
        padded = np.pad(wave, (0, partial_grid_length(samples) - samples))
        reference = librosa.feature.melspectrogram(y=padded, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
        np.testing.assert_allclose(resemblyzer_mel(wave), reference, rtol=1e-4, atol=1e-6 * reference.max())
        np.testing.assert_allclose(np.asarray(layer(wave[None]))[0], resemblyzer_mel(wave), rtol=1e-5, atol=1e-7 * reference.max())
    assert partial_grid_length(1000) == 25600 and partial_grid_length(116640) == 116640  # a 71 % last partial is dropped
    with pytest.raises(ConfigError, match="resemblyzer front end is fixed"):
        FeatureConfig(num_fbanks=40, kind="resemblyzer", energies="log")


@pytest.mark.slow
def test_import_model_gives_resemblyzers_embeddings_through_the_encoder(pytorch_fixtures, tmp_path, capsys):
    from deep_speaker.audio import load_speech
    from deep_speaker.embedding import SpeakerEncoder
    from tests.helpers import cli_in_process

    expected = np.load(pytorch_fixtures / "resemblyzer" / "expected.npz")
    target = tmp_path / "ge2e.keras"
    result = cli_in_process(capsys, "import-model", "resemblyzer", pytorch_fixtures / "resemblyzer" / "pretrained.pt", target)
    assert result.returncode == 0 and "1,420,544 weights" in result.stdout
    data = pytorch_fixtures.parents[1] / "data"
    files = [data / name for name in expected["files"]]
    for index, path in enumerate(files):
        assert len(load_speech(path, trim="resemblyzer")) == int(expected[f"preprocessed_len_{index}"])
    np.testing.assert_array_equal(load_speech(files[0], trim="resemblyzer"), expected["preprocessed_0"])
    for waveform_in in (False, True):
        embeddings = SpeakerEncoder(target, waveform_in=waveform_in).embed_many(files)
        for index, embedding in enumerate(embeddings):
            np.testing.assert_allclose(embedding, expected[f"utterance_{index}"], atol=1e-4)
    refused = cli_in_process(
        capsys, "import-model", "resemblyzer", pytorch_fixtures / "speechbrain" / "ecapa_embedding_model.ckpt", tmp_path / "x.keras"
    )
    assert refused.returncode != 0 and "not a GE2E (Resemblyzer) state dict" in refused.stderr
