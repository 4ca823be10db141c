"""AGAIN-VC on tiny models: the layers' statistics, the converter's shapes and target dependence, the Griffin-Lim
vocoder, conversion to valid audio, training that lowers the reconstruction loss and resumes, and the spoof family."""

import csv

import keras
import numpy as np
import pytest
import soundfile as sf

from deep_speaker.adversarial.conversion import again_convert, griffin_lim, log_mel
from deep_speaker.adversarial.spoofs import build_spoof_corpus, read_manifest
from deep_speaker.checkpoints import save_model
from deep_speaker.config import load_recipe
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import AudioError, CheckpointError, ConfigError
from deep_speaker.models.again_vc import ActivationGuide, ApplyStatistics, InstanceStatistics, build_again_vc, load_converter
from deep_speaker.tf.again_vc import train_again
from tests.helpers import cli_in_process, save_tiny_model, synthetic_speech, tiny_model, write_corpus

TINY = {"channels": 16, "blocks": 2, "content_channels": 4}


def tiny_converter(seed: int = 0):
    keras.utils.set_random_seed(seed)
    return build_again_vc(**TINY)


def test_instance_statistics_and_adaptive_instance_normalisation():
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 50, 8)).astype("float32")
    normalised, mean, spread = (keras.ops.convert_to_numpy(t) for t in InstanceStatistics()(x))
    assert mean.shape == spread.shape == (2, 1, 8)
    assert np.allclose(normalised.mean(axis=1), 0, atol=1e-5) and np.allclose(normalised.std(axis=1), 1, atol=1e-3)
    target_mean, target_spread = np.full((2, 1, 8), -1.0, "float32"), np.full((2, 1, 8), 0.5, "float32")
    styled = keras.ops.convert_to_numpy(ApplyStatistics()([x, target_mean, target_spread]))
    assert np.allclose(styled.mean(axis=1), -1.0, atol=1e-5) and np.allclose(styled.std(axis=1), 0.5, atol=1e-3)
    plain = keras.ops.convert_to_numpy(ApplyStatistics(normalise=False)([x, target_mean, target_spread]))
    assert np.allclose(plain, x * 0.5 - 1.0, atol=1e-5)
    guided = keras.ops.convert_to_numpy(ActivationGuide(0.1)(np.array([-100.0, 0.0, 100.0], "float32")))
    assert guided[1] == pytest.approx(0.5) and 0 < guided[0] < 0.01 and 0.99 < guided[2] < 1


@pytest.mark.slow
def test_the_converter_keeps_the_source_length_depends_on_the_target_and_round_trips(tmp_path):
    converter = tiny_converter()
    rng = np.random.default_rng(1)
    source = rng.normal(-2, 1, (1, 37, 80)).astype("float32")
    first, second = (rng.normal(m, s, (1, 61, 80)).astype("float32") for m, s in ((-3, 0.5), (0, 2)))
    converted = keras.ops.convert_to_numpy(converter([source, first]))
    assert converted.shape == (1, 37, 80)
    assert not np.allclose(converted, keras.ops.convert_to_numpy(converter([source, second])), atol=1e-3)  # the voice comes from the target
    save_model(converter, tmp_path / "vc.keras")
    loaded = load_converter(tmp_path / "vc.keras")
    assert np.allclose(keras.ops.convert_to_numpy(loaded([source, first])), converted, atol=1e-5)
    with pytest.raises(CheckpointError, match="not an AGAIN-VC converter"):
        load_converter(save_tiny_model(tmp_path / "speaker.keras"))


@pytest.mark.slow
def test_griffin_lim_inverts_the_log_mel_spectrogram():
    waveform = synthetic_speech(1.5, pitch=140, seed=4)
    spectrogram = log_mel(waveform)
    assert spectrogram.shape == (waveform.size // 256 + 1, 80) and spectrogram.dtype == np.float32
    rebuilt = griffin_lim(spectrogram, waveform.size)
    assert rebuilt.shape == waveform.shape
    # the spectrogram is kept (phase is not): log-mel error far below the spectrogram's own spread
    error = np.mean(np.abs(log_mel(rebuilt) - spectrogram))
    assert error < 0.25 * np.mean(np.abs(spectrogram - spectrogram.mean()))


@pytest.mark.slow
def test_conversion_gives_valid_audio_and_refuses_what_it_cannot_convert():
    converter = tiny_converter()
    source, target = synthetic_speech(1.2, pitch=110, seed=1), synthetic_speech(0.9, pitch=220, seed=2)
    converted = again_convert(converter, source, target)
    assert converted.shape == source.shape and converted.dtype == np.float32
    assert np.all(np.isfinite(converted)) and np.all(np.abs(converted) <= 1)
    assert np.sqrt(np.mean(converted**2)) == pytest.approx(np.sqrt(np.mean(source**2)), rel=0.1)
    with pytest.raises(AudioError, match="target: 0.10 s is too short"):
        again_convert(converter, source, target[:1600])
    with pytest.raises(AudioError, match="source: silent"):
        again_convert(converter, np.zeros(16000, np.float32), target)


@pytest.mark.slow
def test_convert_voice_command_with_again(tmp_path, capsys):
    save_model(tiny_converter(), tmp_path / "vc.keras")
    sf.write(tmp_path / "a.wav", synthetic_speech(1.5, pitch=100), 16000)
    sf.write(tmp_path / "b.wav", synthetic_speech(1.5, pitch=200, seed=3), 16000)
    done = cli_in_process(
        capsys,
        "convert-voice",
        tmp_path / "a.wav",
        tmp_path / "b.wav",
        tmp_path / "out.wav",
        "--method",
        "again",
        "--converter",
        tmp_path / "vc.keras",
    )
    assert done.returncode == 0 and sf.info(str(tmp_path / "out.wav")).frames == synthetic_speech(1.5).size
    missing = cli_in_process(capsys, "convert-voice", tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "out2.wav", "--method", "again")
    assert missing.returncode != 0 and "needs --converter" in missing.stderr and not (tmp_path / "out2.wav").exists()


@pytest.mark.slow
def test_training_lowers_the_reconstruction_loss_and_resumes_exactly(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=4)
    options = dict(batch_size=4, segment_frames=32, **TINY, validation_fraction=0.25, learning_rate=3e-3, steps_per_epoch=5)
    out = train_again(tmp_path / "whole", corpus, load_recipe("again", epochs=8, **options), progress=False)
    with (out.parent / "training.csv").open() as log:
        held_out_l1 = [float(row["val_loss"]) for row in csv.DictReader(log)]
    assert len(held_out_l1) == 8 and min(held_out_l1) < 0.8 * held_out_l1[0]
    # interrupted after 4 epochs (its resume point), then continued: the same converter as one uninterrupted run
    train_again(tmp_path / "resumed", corpus, load_recipe("again", epochs=4, **options), progress=False)
    resumed = train_again(tmp_path / "resumed", corpus, load_recipe("again", epochs=8, **options), progress=False)
    for a, b in zip(load_converter(out).get_weights(), load_converter(resumed).get_weights()):
        assert np.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="original's Adam"):
        load_recipe("again", optimiser="sgd")


@pytest.mark.slow
def test_the_again_spoof_family_needs_a_converter_and_writes_conversions(tmp_path):
    recordings = []
    for speaker in range(2):
        for index in range(2):
            path = tmp_path / "genuine" / f"spk{speaker}" / f"utt{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synthetic_speech(1.0, pitch=100 + 80 * speaker, seed=index), 16000)
            recordings.append((path, f"spk{speaker}"))
    encoder = SpeakerEncoder(model=tiny_model())
    with pytest.raises(ConfigError, match="needs an AGAIN-VC converter"):
        build_spoof_corpus(recordings, tmp_path / "out", encoder, 0.99, families=("again",), per_family=2, progress=False)
    manifest = build_spoof_corpus(
        recordings, tmp_path / "out", encoder, 0.99, families=("again",), per_family=2, progress=False, converter=tiny_converter()
    )
    spoofs = [path for path, _, family in read_manifest(manifest) if family == "again"]
    assert len(spoofs) == 2 and [sf.info(path).frames for path in spoofs] == [synthetic_speech(1.0).size] * 2
