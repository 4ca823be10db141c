"""The overlapped-speech detector: training on synthetic conversations, resuming, loading, and the shipped one."""

import csv

import numpy as np
import pytest

from deep_speaker.config import load_recipe
from deep_speaker.diarization.pipeline import load_overlap_detector
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.models.overlap import OVERLAP_NAME, build_overlap_detector, overlap_per_block
from tests.helpers import cli_in_process, save_tiny_model, write_corpus


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
