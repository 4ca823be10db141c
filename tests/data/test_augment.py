"""Waveform augmentation: each stage keeps what it must (length, SNR, power) and is reproducible by seed."""

import numpy as np
import pytest

from deep_speaker.data.augment import (
    WaveformAugmentation,
    augment,
    babble,
    coloured_noise,
    mix_at_snr,
    power,
    read_clips,
    reverberate,
    simulated_rir,
    speed_perturb,
    through_channel,
)
from deep_speaker.errors import ConfigError
from tests.helpers import synthetic_speech

SPEECH = synthetic_speech(2.0)


def _snr(clean, mixed):
    return 10 * np.log10(power(clean) / power(mixed - clean))


@pytest.mark.parametrize("snr", [0.0, 5.0, 20.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_is_mixed_at_the_asked_snr(snr, colour):
    rng = np.random.default_rng(0)
    mixed = mix_at_snr(SPEECH, coloured_noise(colour, 8000, rng), snr, rng)  # shorter noise is tiled
    assert mixed.shape == SPEECH.shape and mixed.dtype == np.float32
    assert abs(_snr(SPEECH, mixed) - snr) < 1.0


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(1)
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        noise = coloured_noise(colour, 2**16, rng)
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        frequencies = np.arange(spectrum.size)
        band = (frequencies > 100) & (frequencies < 20000)
        fitted = np.polyfit(np.log(frequencies[band]), np.log(spectrum[band]), 1)[0]
        assert abs(fitted - slope) < 0.15, (colour, fitted)
        assert abs(power(noise) - 1) < 1e-3


def test_babble_sums_other_talkers_and_rooms_keep_length_and_power():
    rng = np.random.default_rng(2)
    others = [synthetic_speech(1.0, pitch=p, seed=i) for i, p in enumerate((90, 130, 170, 210, 250))]
    crowd = babble(others, SPEECH.size, rng)
    assert crowd.shape == SPEECH.shape and 3 <= power(crowd) <= 7.5
    rir = simulated_rir(rng, rt60=0.5)
    assert rir.size > 0.5 * 16000 and abs(np.linalg.norm(rir) - 1) < 1e-5
    tail = rir[int(0.4 * 16000) :]
    assert np.sqrt(np.mean(tail**2)) < 0.05 * np.sqrt(np.mean(rir[5:800] ** 2))  # decayed by the end
    wet = reverberate(SPEECH, rir)
    assert wet.shape == SPEECH.shape and abs(power(wet) / power(SPEECH) - 1) < 1e-3
    assert np.corrcoef(wet, SPEECH)[0, 1] < 0.99


def test_room_responses_and_noise_files_from_shared_data(shared_data):
    rirs = read_clips(sorted((shared_data / "rir").glob("*.flac")))
    noises = read_clips(sorted((shared_data / "noise").glob("*.flac")))
    assert len(rirs) == 4 and len(noises) == 5
    rng = np.random.default_rng(3)
    assert reverberate(SPEECH, rirs[0]).shape == SPEECH.shape
    assert abs(_snr(SPEECH, mix_at_snr(SPEECH, noises[0], 10.0, rng)) - 10.0) < 1.0


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_duration(factor):
    out = speed_perturb(SPEECH, factor)
    assert abs(out.size - SPEECH.size / factor) <= 2


@pytest.mark.parametrize("channel", ["mp3", "opus", "telephone"])
def test_channels_keep_length_and_the_signal(channel):
    out = through_channel(SPEECH, channel, np.random.default_rng(4))
    assert out.shape == SPEECH.shape and out.dtype == np.float32
    assert abs(10 * np.log10(power(out) / power(SPEECH))) < 3.0
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    if channel == "telephone":  # nothing above 4 kHz survives
        frequencies = np.fft.rfftfreq(out.size, 1 / 16000)
        assert spectrum[frequencies > 4200].sum() < 1e-3 * spectrum.sum()


def test_augment_is_reproducible_by_seed_and_keeps_length():
    config = WaveformAugmentation(noise_probability=1.0, reverb_probability=1.0, channel_probability=1.0)
    others = [synthetic_speech(1.0, pitch=p) for p in (90, 150, 210)]
    first = augment(SPEECH, np.random.default_rng(7), config, others=others)
    again = augment(SPEECH, np.random.default_rng(7), config, others=others)
    other = augment(SPEECH, np.random.default_rng(8), config, others=others)
    assert first.shape == SPEECH.shape
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ConfigError, match="noise_probability must be in"):
        WaveformAugmentation(noise_probability=1.5)
