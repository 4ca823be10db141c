"""The assembly floor: one path gives one encoder, every encoder keeps the `Encoder` contract, a recording is decoded
once for every part that reads it, and a diarizer built on a loaded encoder shares its weights."""

import numpy as np
import pytest
import soundfile as sf

from deep_speaker import audio
from deep_speaker.assembly import build_verifier, fuse, load_diarizer, load_encoder
from deep_speaker.diarization import DiarizationConfig
from deep_speaker.embedding import ExportedEncoder, SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.exported import RUNTIMES
from deep_speaker.features import FeatureConfig
from deep_speaker.score_fusion import FusedEncoder
from tests.helpers import save_tiny_model, synthetic_speech


@pytest.fixture
def fusion(tmp_path):
    """A fusion of two tiny models with different trims, fitted on three synthetic speakers, and its recordings."""
    linear = save_tiny_model(tmp_path / "linear.keras")
    log = save_tiny_model(tmp_path / "log.keras", embedding_dim=8, features=FeatureConfig(energies="log", trim="energy"))
    paths, labels = [], []
    for speaker, pitch in enumerate((100, 160, 230)):
        for take in range(2):
            path = tmp_path / f"s{speaker}_{take}.wav"
            sf.write(path, synthetic_speech(1.0, pitch=pitch + 9 * take, seed=take), 16000)
            paths.append(path)
            labels.append(speaker)
    return fuse([linear, log], paths, labels, tmp_path / "both.fusion.json", progress=False, runtime="keras"), paths


@pytest.fixture
def decodes(monkeypatch):
    """The files decoded from here on, in order."""
    seen = []
    read = audio.read_audio

    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return read(path, *args, **kwargs)

    monkeypatch.setattr(audio, "read_audio", counting)
    return seen


def test_a_fusion_decodes_each_recording_once_for_all_members(fusion, decodes):
    target, paths = fusion
    encoder = load_encoder(target, runtime="keras")
    assert isinstance(encoder, FusedEncoder) and all(isinstance(m, SpeakerEncoder) for m in encoder.members)
    embeddings = encoder.embed_many(paths)
    assert decodes == [str(p) for p in paths]
    decodes.clear()
    np.testing.assert_allclose(encoder.embed(paths[0]), embeddings[0], atol=1e-6)
    assert decodes == [str(paths[0])]


def test_every_encoder_is_its_parts_scaled_side_by_side(fusion):
    target, paths = fusion
    fused = load_encoder(target, runtime="keras")
    parts = fused.parts
    assert [part for part, _ in parts] == fused.members and sum(scale**2 for _, scale in parts) == pytest.approx(1.0)
    expected = np.concatenate([part.embed(paths[0]) * scale for part, scale in parts])
    np.testing.assert_allclose(fused.embed(paths[0]), expected, atol=1e-6)
    single = fused.members[0]
    assert single.parts == [(single, 1.0)] and fused.embedding_dim == sum(part.embedding_dim for part, _ in parts)


def test_a_verifier_with_a_spoof_gate_decodes_each_recording_once(fusion, decodes):
    target, paths = fusion
    gated = []
    verifier = build_verifier(load_encoder(target, runtime="keras"), threshold=0.5)
    verifier.spoof_gate = lambda recording: gated.append(recording.name) or None
    decision = verifier.verify(paths[0], paths[1])
    assert decision.accepted is not None and gated == [paths[0], paths[1]]
    assert decodes == [str(paths[0]), str(paths[1])]  # not once more per member and once more for the gate


def test_runtimes_and_exported_models_open_by_the_one_rule(tmp_path):
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    with pytest.raises(ConfigError, match="unknown runtime 'torch'"):
        load_encoder(checkpoint, runtime="torch")
    for runtime in RUNTIMES:  # named, not a traceback from hashing or loading a file that is not there
        with pytest.raises(CheckpointError, match="missing.keras: no such checkpoint file"):
            load_encoder(tmp_path / "missing.keras", runtime=runtime)
    keras_encoder = load_encoder(checkpoint, runtime="keras")
    assert type(keras_encoder) is SpeakerEncoder and keras_encoder.runtime == "keras"
    default = load_encoder(checkpoint)  # ONNX Runtime: exported once, same identity
    assert type(default) is ExportedEncoder and default.runtime == "onnx" and default.fingerprint == keras_encoder.fingerprint
    with pytest.raises(ConfigError, match=r"load_encoder\(\) opens the default system"):  # one default, load_encoder's
        SpeakerEncoder()
    (tmp_path / "model.onnx").write_bytes(b"not read: the name says it is an export")
    with pytest.raises(ConfigError, match="an exported model; open it with load_encoder"):
        SpeakerEncoder(tmp_path / "model.onnx")


def test_a_diarizer_on_a_loaded_encoder_shares_its_weights(fusion):
    target, _ = fusion
    encoder = load_encoder(target, runtime="keras")
    diarizer = load_diarizer(encoder=encoder, config=DiarizationConfig(exclusive=True))
    for windowed, member in zip(diarizer.encoder.members, encoder.members):
        assert windowed.speaker_model is member.speaker_model  # loaded once
        assert windowed.feature_config.trim == "none" and not windowed.require_speech and windowed.crop_frames == 150
    assert diarizer.encoder.fingerprint == encoder.fingerprint and diarizer.overlap_detector is None


def test_the_diarization_package_offers_the_pipeline():
    from deep_speaker.diarization import Diarizer
    from deep_speaker.diarization.pipeline import Diarizer as PipelineDiarizer

    assert Diarizer is PipelineDiarizer and DiarizationConfig().window == 1.5


def test_exported_encoders_refuse_keras_only_options(tmp_path):
    from deep_speaker.models import model_fingerprint
    from deep_speaker.tf.export import export_model
    from tests.helpers import tiny_model

    model = tiny_model()
    export_model(model, tmp_path / "tiny.onnx", "onnx")
    encoder = load_encoder(tmp_path / "tiny.onnx", trim="energy")
    assert isinstance(encoder, ExportedEncoder) and encoder.fingerprint == model_fingerprint(model)
    assert encoder.feature_config.trim == "energy" and encoder.parts == [(encoder, 1.0)]
    for option in ({"crop_frames": 160}, {"bfloat16": True}, {"waveform_in": True}):
        with pytest.raises(ConfigError, match="with an exported model"):
            load_encoder(tmp_path / "tiny.onnx", **option)
