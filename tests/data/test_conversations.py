"""Synthetic conversations, noise floors and the overlap detector's batches."""

import numpy as np
import pytest

from deep_speaker.data.conversations import (
    NoiseSources,
    OverlapBatches,
    block_centres,
    conversation,
    crop_turns,
    frame_centres,
    in_noise,
    talkers_at,
)
from deep_speaker.errors import ConfigError
from deep_speaker.frontends.deep_speaker import num_frames_of
from tests.helpers import synthetic_speech

VOICES = {f"s{k}": [synthetic_speech(1.0 + 0.2 * u, pitch=100 + 50 * k, seed=u) for u in range(3)] for k in range(4)}


def test_a_conversation_s_turns_say_where_each_voice_sounds_and_where_two_overlap():
    rng = np.random.default_rng(0)
    signal, turns = conversation(VOICES, rng, overlap_probability=1.0, max_speakers=3)
    assert 2 <= len({s for _, _, s in turns}) <= 3 and len(turns) >= 3
    assert all(b > a for a, b, _ in turns) and max(b for _, b, _ in turns) == pytest.approx(signal.size / 16000 - 0.5)
    assert all(turns[i + 1][0] < turns[i][1] for i in range(len(turns) - 1))  # every turn starts before the last ends
    both = talkers_at(turns, block_centres(signal.size)) >= 2
    assert 0.3 * (len(turns) - 1) <= both.sum() / 100 <= 1.0 * (len(turns) - 1) + 0.01
    _, calm = conversation(VOICES, np.random.default_rng(0), overlap_probability=0.0)
    assert (talkers_at(calm, block_centres(60 * 16000)) <= 1).all()
    again, _ = conversation(VOICES, np.random.default_rng(0), overlap_probability=1.0, max_speakers=3)
    assert np.array_equal(signal, again)  # seeded: the same conversation


def test_noise_floors_are_at_their_level_under_speech_at_its_peak():
    rng = np.random.default_rng(1)
    silence = np.zeros(32000, np.float32)
    for kind in ("white", "pink", "brown", "hum"):
        floor = in_noise(silence, rng, kind, floor_dbfs=-40.0)
        assert 20 * np.log10(np.sqrt(np.mean(floor.astype(np.float64) ** 2))) == pytest.approx(-40.0, abs=0.01), kind
    speech = in_noise(synthetic_speech(1.0), rng, "white", floor_dbfs=-200.0, peak_dbfs=-6.0)
    assert 20 * np.log10(np.abs(speech).max()) == pytest.approx(-6.0, abs=0.01)
    rooms = NoiseSources(rooms=[np.r_[1.0, np.zeros(800), 0.5, np.zeros(800), 0.25].astype(np.float32)])
    wet = in_noise(synthetic_speech(1.0), rng, "white + room", -200.0, -6.0, rooms)
    assert 20 * np.log10(np.abs(wet).max()) == pytest.approx(-6.0, abs=0.01) and not np.allclose(wet, speech, atol=1e-3)
    with pytest.raises(ConfigError, match="unknown noise kind"):
        in_noise(silence, rng, "thunder")
    with pytest.raises(ConfigError, match="babble.*needs recordings"):
        in_noise(silence, rng, "babble")


def test_overlap_batches_label_the_frames_two_turns_cover():
    assert crop_turns([(0.0, 2.0, "a"), (1.5, 4.0, "b"), (5.0, 6.0, "a")], 1.0, 4.5) == [(0.0, 1.0, "a"), (0.5, 3.0, "b")]
    batches = OverlapBatches(VOICES, NoiseSources(talkers=VOICES["s0"]), batch_size=6, length=48000, steps=2, seed=3)
    crops, labels = batches[0]
    assert crops.shape == (6, 48000) and labels.shape == (6, num_frames_of(48000)) and set(np.unique(labels)) <= {0.0, 1.0}
    assert 0 < labels.mean() < 0.6 and np.isfinite(crops).all()
    assert np.array_equal(batches[0][1], labels) and not np.array_equal(batches[1][1], labels)  # seeded per batch
    assert frame_centres(48000)[0] == pytest.approx(0.0125) and block_centres(48000)[0] == pytest.approx(0.005)
