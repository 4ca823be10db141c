"""GE2E (Resemblyzer) in Keras: partial windows, and the converted published weights reproducing Resemblyzer."""

import keras
import numpy as np
import pytest

from deep_speaker.errors import CheckpointError
from deep_speaker.importers import read_torch_checkpoint
from deep_speaker.layers.partials import PartialAverage, PartialWindows
from deep_speaker.models import build_backbone
from deep_speaker.models.ge2e import ge2e_weights


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


def _resemblyzer_mel(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's embed_utterance input: the waveform padded to its last partial's end (a partial covering
    less than 75 % is dropped), librosa's 40-band power mel spectrogram (25 ms / 10 ms)."""
    import librosa

    frames = len(wav) // 160 + 1
    starts = list(range(0, max(1, frames - 160 + 77 + 1), 77))
    if (len(wav) - starts[-1] * 160) / (160 * 160) < 0.75 and len(starts) > 1:
        starts.pop()
    wav = np.pad(wav, (0, max(0, (starts[-1] + 160) * 160 - len(wav))))
    return librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).astype(np.float32).T


def test_the_converted_published_encoder_reproduces_resemblyzer(pytorch_fixtures):
    expected = np.load(pytorch_fixtures / "resemblyzer" / "expected.npz")
    backbone = build_backbone("ge2e", 40)
    ge2e_weights(backbone, read_torch_checkpoint(pytorch_fixtures / "resemblyzer" / "pretrained.pt")["model_state"], "pretrained.pt")
    mel = _resemblyzer_mel(expected["preprocessed_0"])
    np.testing.assert_allclose(mel[: len(expected["mel_0"])], expected["mel_0"], atol=1e-6)
    partials = keras.Model(backbone.input, backbone.get_layer("partial_ln").output).predict(mel[None], verbose=0)
    np.testing.assert_allclose(partials, expected["partials_0"], atol=1e-4)
    embedding = backbone.predict(mel[None], verbose=0)["embedding"][0]
    np.testing.assert_allclose(embedding / np.linalg.norm(embedding), expected["utterance_0"], atol=1e-4)


def test_a_state_dict_of_another_model_is_refused():
    backbone = build_backbone("ge2e", 40, width=0.25)
    with pytest.raises(CheckpointError, match="not a GE2E"):
        ge2e_weights(backbone, {"linear.weight": np.zeros((256, 256))}, "other.pt")
    state = {f"lstm.{kind}_l{i}": np.zeros((1024, 40 if (kind == "weight_ih" and i == 0) else 256)) for i in range(3) for kind in ("weight_ih", "weight_hh")}
    state.update({f"lstm.bias_{kind}_l{i}": np.zeros(1024) for i in range(3) for kind in ("ih", "hh")})
    with pytest.raises(CheckpointError, match="layer lstm_0 needs weights of shapes"):
        ge2e_weights(backbone, state, "wide.pt")
