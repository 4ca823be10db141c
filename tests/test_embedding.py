from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.embedding import SpeakerEncoder, to_bfloat16
from deep_speaker.errors import CheckpointError
from deep_speaker.features import FeatureConfig
from deep_speaker.scoring import CosineScorer
from tests.helpers import cli_in_process, save_tiny_model, synthetic_speech, tiny_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", width=0.125, embedding_dim=64)


@pytest.fixture
def two_files(tmp_path):
    paths = []
    for i, seconds in enumerate((1.2, 2.5)):
        path = tmp_path / f"s{i}.wav"
        sf.write(path, synthetic_speech(seconds, pitch=110 + 50 * i, seed=i), 16000)
        paths.append(path)
    return paths


def test_full_utterance_is_deterministic_and_unit_norm(tiny_checkpoint, two_files):
    encoder = SpeakerEncoder(tiny_checkpoint)
    first, again = encoder.embed(two_files[0]), encoder.embed(two_files[0])
    assert first.shape == (64,) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert abs(np.linalg.norm(first) - 1) < 1e-5


def test_embed_many_equals_embed(tiny_checkpoint, two_files):
    for crop in (None, 160):
        encoder = SpeakerEncoder(tiny_checkpoint, crop_frames=crop, batch_size=1)
        many = encoder.embed_many(two_files * 3)
        assert many.shape == (6, 64)
        for i, path in enumerate(two_files * 3):
            np.testing.assert_allclose(many[i], encoder.embed(path), atol=1e-6)


def test_xla_compiled_crops_match_uncompiled(tiny_checkpoint, two_files):
    """Full batches of crops take the XLA copy of the graph, the tail batch the plain one; both agree."""
    compiled = SpeakerEncoder(tiny_checkpoint, crop_frames=160, batch_size=2)
    plain = SpeakerEncoder(tiny_checkpoint, crop_frames=160, batch_size=2, jit_compile=False)
    files = two_files * 2 + two_files[:1]
    np.testing.assert_allclose(compiled.embed_many(files), plain.embed_many(files), atol=1e-5)
    assert compiled._compiled_model.predict_function is not None and plain._compiled_model is None
    assert SpeakerEncoder(tiny_checkpoint)._compiled_model is None


def test_waveform_input_matches_file(tiny_checkpoint, two_files):
    encoder = SpeakerEncoder(tiny_checkpoint)
    waveform, rate = sf.read(two_files[1], dtype="float32")
    np.testing.assert_allclose(encoder.embed(waveform, rate), encoder.embed(two_files[1]), atol=1e-6)


def test_crop_mode_is_seeded(tiny_checkpoint, two_files):
    a = SpeakerEncoder(tiny_checkpoint, crop_frames=160, seed=1).embed(two_files[1])
    b = SpeakerEncoder(tiny_checkpoint, crop_frames=160, seed=1).embed(two_files[1])
    c = SpeakerEncoder(tiny_checkpoint, crop_frames=160, seed=2).embed(two_files[1])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bfloat16_stays_close(tiny_checkpoint, two_files):
    encoder = SpeakerEncoder(tiny_checkpoint, crop_frames=160)
    fast = SpeakerEncoder(model=to_bfloat16(encoder.speaker_model), crop_frames=160)
    for path in two_files:
        assert CosineScorer().score(encoder.embed(path), fast.embed(path)) > 0.99


@pytest.mark.parametrize("features", [FeatureConfig(), FeatureConfig(energies="log", normalisation="utterance")])
def test_waveform_in_equals_host_features(two_files, features):
    model = tiny_model(features=features)
    host, graph = SpeakerEncoder(model=model), SpeakerEncoder(model=model, waveform_in=True)
    np.testing.assert_allclose(graph.embed_many(two_files), host.embed_many(two_files), atol=1e-5)
    assert host.fingerprint == graph.fingerprint


def test_encoder_refuses_models_that_are_not_speaker_models():
    import keras

    inputs = keras.Input((None, 64))
    with pytest.raises(CheckpointError, match="not a deep-speaker speaker model"):
        SpeakerEncoder(model=keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(inputs)))


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="absent.keras: no such checkpoint file$"):
        SpeakerEncoder(tmp_path / "absent.keras")


def test_cli_embed_and_verify(tiny_checkpoint, two_files, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    result = cli_in_process(capsys, "embed", *two_files, "--checkpoint_file", tiny_checkpoint, "--out", out)
    assert result.returncode == 0, result.stderr
    embeddings = np.load(out)
    assert embeddings.shape == (2, 64)
    result = cli_in_process(capsys, "verify", *two_files, "--checkpoint_file", tiny_checkpoint, "--threshold", "0.3")
    assert result.returncode == 0, result.stderr
    score = float(result.stdout.split("score = ")[1].split()[0])
    assert score == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-4)
    assert ("same speaker" if score >= 0.3 else "different speakers") in result.stdout


def test_cli_verify_bad_audio(tiny_checkpoint, two_files, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    result = cli_in_process(capsys, "verify", two_files[0], silent, "--checkpoint_file", tiny_checkpoint)
    assert result.returncode == 2
    assert "silent.wav: silent" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_reference_example_scores(legacy_fixtures, shared_data):
    """The fixture weights are a pattern, not a trained model: check the pipeline runs end to end on real files."""
    encoder = SpeakerEncoder(legacy_fixtures / "rescnn_triplet_layout.h5.gz", crop_frames=160)
    samples = shared_data / "samples"
    embeddings = encoder.embed_many([samples / "PhilippeRemy" / "PhilippeRemy_001.wav", samples / "1255-90413-0001.flac"])
    assert embeddings.shape == (2, 512) and np.all(np.isfinite(embeddings))


def test_noise_is_refused_not_scored(tiny_checkpoint, tmp_path, capsys):
    from tests.helpers import noise

    files = []
    for k, kind in enumerate(("white", "white", "dither")):
        files.append(tmp_path / f"{kind}{k}.wav")
        sf.write(files[-1], noise(kind, seed=k), 16000)
    result = cli_in_process(capsys, "verify", files[0], files[1], "--checkpoint_file", tiny_checkpoint, "--threshold", "0.5")
    assert result.returncode == 2 and "white0.wav: no speech found" in result.stderr
    enrolled = cli_in_process(capsys, "enroll", "hiss", files[0], "--checkpoint_file", tiny_checkpoint, "--store", tmp_path / "s.db")
    assert enrolled.returncode == 2 and "no speech found" in enrolled.stderr
    assert SpeakerEncoder(tiny_checkpoint, require_speech=False).embed(files[0]).shape == (64,)


def test_encoder_options_are_checked():
    with pytest.raises(Exception, match="crop_frames must be at least 16"):
        SpeakerEncoder(model=tiny_model(), crop_frames=0)


def test_long_recordings_are_embedded_in_bounded_windows(tmp_path):
    """Beyond max_frames an utterance is the mean of equal windows: each forward pass sees at most that many."""
    model = tiny_model()
    long_speech = np.tile(synthetic_speech(1.0), 6)
    seen = []
    for waveform_in in (False, True):
        encoder = SpeakerEncoder(model=model, max_frames=200, waveform_in=waveform_in)
        forward = encoder._waveform_forward if waveform_in else encoder._forward
        limit = 200 * 160 if waveform_in else 200

        def spy(batch, forward=forward, limit=limit):
            assert batch.shape[1] <= limit
            seen.append(batch.shape[1])
            return forward(batch)

        if waveform_in:
            encoder._waveform_forward = spy
        else:
            encoder._forward = spy
        embedding = encoder.embed(long_speech)
        assert embedding.shape == (16,) and abs(np.linalg.norm(embedding) - 1) < 1e-5
    assert len(seen) >= 6
    short = SpeakerEncoder(model=model, max_frames=200)
    np.testing.assert_allclose(short.embed(synthetic_speech(1.0)), SpeakerEncoder(model=model).embed(synthetic_speech(1.0)), atol=1e-6)
