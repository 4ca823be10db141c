"""SpeechBrain ECAPA-TDNN and x-vector checkpoints in Keras: its Fbank, its weights, its embeddings."""

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.frontends.speechbrain import speechbrain_fbank
from deep_speaker.layers import Fbank
from deep_speaker.models.speaker_model import feature_model
from tests.helpers import cli_in_process, torchaudio_resample

MODELS = {"ecapa": 80, "xvector": 24}  # fixture model: mel bands


def _as_speechbrain_read_it(path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    samples = samples.mean(axis=1) if samples.ndim > 1 else samples
    return torchaudio_resample(samples, rate, 16000) if rate != 16000 else samples


@pytest.fixture(scope="module")
def speechbrain(tmp_path_factory):
    from tests.conftest import PYTORCH_IMPORT, require_shared

    root = require_shared(PYTORCH_IMPORT) / "speechbrain"
    return root, np.load(root / "expected.npz"), root.parents[2] / "data"


@pytest.mark.parametrize("model", MODELS)
def test_features_match_speechbrains_fbank_and_sentence_normalisation(speechbrain, model):
    root, expected, data = speechbrain
    for index in (0, 1):
        wave = _as_speechbrain_read_it(data / expected["files"][index])
        ours = speechbrain_fbank(wave, MODELS[model])
        difference = np.abs(ours - expected[f"{model}_normalised_{index}"])
        # within 1e-3 but for a handful of values 80 dB down, where SpeechBrain's float32 spectrum rounds
        assert np.mean(difference <= 1e-3) > 0.9995 and difference.max() < 5e-3
        graph = np.asarray(Fbank(num_fbanks=MODELS[model], trim="none", kind="speechbrain")(wave[None]))[0]
        np.testing.assert_allclose(graph, ours, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_imported_models_reproduce_speechbrains_embeddings(speechbrain, model, tmp_path, capsys):
    root, expected, data = speechbrain
    target = tmp_path / f"{model}.keras"
    result = cli_in_process(capsys, "import-model", "speechbrain", root / f"{model}_embedding_model.ckpt", target)
    assert result.returncode == 0, result.stderr
    encoder = SpeakerEncoder(target)
    from_features = feature_model(encoder.speaker_model)
    for index, name in enumerate(expected["files"]):
        reference = expected[f"{model}_embedding_{index}"] / np.linalg.norm(expected[f"{model}_embedding_{index}"])
        features = speechbrain_fbank(_as_speechbrain_read_it(data / name), MODELS[model])
        assert float(np.asarray(from_features.predict(features[None], verbose=0))[0] @ reference) >= 0.9999
        if sf.info(data / name).samplerate == 16000:  # no resampler in between: the encoder on the file itself
            assert float(encoder.embed(data / name) @ reference) >= 0.9999


def test_other_checkpoints_are_refused(speechbrain, tmp_path, capsys):
    root = speechbrain[0]
    refused = cli_in_process(capsys, "import-model", "speechbrain", root.parent / "resemblyzer" / "pretrained.pt", tmp_path / "x.keras")
    assert refused.returncode != 0 and "neither a SpeechBrain ECAPA-TDNN nor an x-vector" in refused.stderr
