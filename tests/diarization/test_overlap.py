"""The overlapped-speech detector: training on synthetic conversations, resuming, loading, and the shipped one."""

import csv
from pathlib import Path

import numpy as np
import pytest

from deep_speaker.config import load_recipe
from deep_speaker.diarization.pipeline import DEFAULT_OVERLAP_DETECTOR, load_overlap_detector, overlap_per_block
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.models.overlap import OVERLAP_NAME, build_overlap_detector
from tests.helpers import ROOT, cli_in_process, pitch_conversation, save_tiny_model, write_corpus


def test_the_detector_gives_a_probability_per_10_ms_block():
    model = build_overlap_detector()
    for seconds in (0.01, 0.3, 2.0):  # shorter than one frame, a few frames, many
        samples = np.random.default_rng(0).normal(0, 0.1, int(seconds * 16000)).astype(np.float32)
        probabilities = overlap_per_block(model, samples)
        assert probabilities.shape == (-(-samples.size // 160),) and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_training_needs_speakers_to_hold_out_and_to_train_on(tmp_path):
    from deep_speaker.tf.train import train_overlap

    with pytest.raises(ConfigError, match="at least 3 training speakers"):
        train_overlap(tmp_path / "work", write_corpus(tmp_path / "small", speakers=3), load_recipe("overlap"), progress=False)


@pytest.mark.slow
def test_training_lowers_the_loss_resumes_and_the_result_loads(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=6, utterances=3)
    recipe = load_recipe(
        "overlap", epochs=3, steps_per_epoch=6, batch_size=4, num_frames=300, validation_fraction=0.34, learning_rate=0.003
    )
    from deep_speaker.tf.train import train_overlap

    best = train_overlap(tmp_path / "work", corpus, recipe, progress=False)
    log = list(csv.DictReader((tmp_path / "work" / "overlap" / "training.csv").open()))
    assert len(log) == 3 and float(log[-1]["loss"]) < float(log[0]["loss"])
    assert all(0 <= float(row["val_eer"]) <= 1 for row in log)
    assert load_overlap_detector(best).name == OVERLAP_NAME
    resumed = cli_in_process(
        capsys,
        "train-overlap",
        "--working_dir",
        tmp_path / "work",
        "--audio_dir",
        corpus,
        "--epochs",
        "4",
        "--steps_per_epoch",
        "6",
        "--batch_size",
        "4",
        "--num_frames",
        "300",
        "--validation_fraction",
        "0.34",
        "--learning_rate",
        "0.003",
        "--quiet",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(csv.DictReader((tmp_path / "work" / "overlap" / "training.csv").open()))) == 4  # one more epoch, not four
    with pytest.raises(CheckpointError, match="not an overlap detector"):
        load_overlap_detector(save_tiny_model(tmp_path / "speaker.keras"))


@pytest.mark.slow
def test_the_shipped_detector_finds_where_two_real_speakers_talk_at_once(shared_data):
    """Two dev speakers (never trained on) overlapping for 1.5 s under a -50 dBFS floor: the detector's probability
    is higher there than anywhere either talks alone."""
    from deep_speaker.audio import load_speech
    from deep_speaker.data.corpus import discover_utterances

    by_speaker = {}
    for utterance in discover_utterances(shared_data / "speechocean762" / "dev"):
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    speakers = sorted(by_speaker)
    detector = load_overlap_detector()
    rng = np.random.default_rng(0)
    inside, outside = [], []
    for first, second in ((speakers[0], speakers[20]), (speakers[5], speakers[40]), (speakers[10], speakers[55])):
        a = np.concatenate([load_speech(p) for p in by_speaker[first][:2]])
        b = np.concatenate([load_speech(p) for p in by_speaker[second][:2]])
        start = a.size - 24000  # b starts 1.5 s before a ends
        wave = np.zeros(start + b.size, np.float32)
        wave[: a.size] += a
        wave[start:] += b
        wave += rng.normal(0, 10 ** (-50 / 20), wave.size).astype(np.float32)
        probability = overlap_per_block(detector, wave)
        blocks = np.arange(probability.size)
        both = (blocks >= start // 160 + 20) & (blocks < a.size // 160 - 20)
        alone = (blocks < start // 160 - 100) | (blocks > a.size // 160 + 100)
        inside.append(np.median(probability[both]))
        outside.append(np.quantile(probability[alone], 0.9))
    assert np.mean(inside) > np.mean(outside), (inside, outside)


@pytest.mark.slow
def test_a_detector_runs_through_its_cached_onnx_copy_and_diarize_needs_no_tensorflow(tmp_path, private_home, caplog):
    import shutil
    import subprocess
    import sys

    import soundfile as sf

    from deep_speaker.exported import cached_onnx_copy, onnx_cache_path
    from deep_speaker.tf.export import onnx_model_copy

    detector = Path(shutil.copy(DEFAULT_OVERLAP_DETECTOR, tmp_path / "detector.keras"))  # no copy beside it: cached
    assert cached_onnx_copy(detector) is None
    keras_detector = load_overlap_detector(detector)
    copy = onnx_model_copy(detector, keras_detector)
    wave, _ = pitch_conversation([(110, 2.0), (220, 2.0), (110, 1.5)])
    np.testing.assert_allclose(overlap_per_block(copy, wave), overlap_per_block(keras_detector, wave), atol=1e-4)
    assert cached_onnx_copy(detector) is not None
    cached = onnx_cache_path(detector)
    kept = cached.read_bytes()
    cached.write_bytes(kept.replace(b"source_sha256", b"source_sha257"))  # a label edited: refused, exported again
    with caplog.at_level("WARNING"):
        assert cached_onnx_copy(detector) is None
    assert "not this model's copy" in caplog.text
    cached.write_bytes(kept)
    audio, model = tmp_path / "talk.wav", save_tiny_model(tmp_path / "tiny.keras")
    sf.write(audio, wave, 16000)
    script = (
        "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); "
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(code)"
    )
    command = [sys.executable, "-c", script, "diarize", audio, "--checkpoint_file", model, "--threshold", "0.5", "--runtime", "onnx"]
    runs = [subprocess.run([*map(str, command), "--quiet"], capture_output=True, text=True, cwd=ROOT) for _ in range(2)]
    assert all(run.returncode == 0 and "turn(s)" in run.stdout for run in runs), runs[0].stderr
    assert runs[0].stdout.strip().endswith("tensorflow loaded")  # the tiny model's first run exports it
    assert runs[1].stdout.strip().endswith("no tensorflow") and runs[1].stdout.splitlines()[:-1] == runs[0].stdout.splitlines()[:-1]
