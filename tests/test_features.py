import numpy as np
import pytest
from python_speech_features import fbank
from python_speech_features.base import get_filterbanks

from deep_speaker.audio import load_speech, read_audio, trim_silence_reference
from deep_speaker.features import NUM_FBANKS, FeatureConfig, compute_features, crop_or_pad, file_features
from deep_speaker.frontends.spectra import mel_filterbank
from tests.helpers import synthetic_speech


def reference_features(signal: np.ndarray) -> np.ndarray:
    """The reference's mfcc_fbank: psf fbank + its per-frame normalisation loop (the oracle)."""
    energies, _ = fbank(signal, samplerate=16000, nfilt=64)
    return np.array([(v - np.mean(v)) / max(np.std(v), 1e-12) for v in energies], dtype=np.float32)


def test_filterbank_equals_psf():
    np.testing.assert_array_equal(mel_filterbank(64, 512, 16000), get_filterbanks(64, 512, 16000))


@pytest.mark.parametrize("length", [100, 400, 401, 560, 16000, 23456])
def test_matches_psf_on_synthetic_signals(length):
    signal = synthetic_speech(2.0)[:length] + np.float32(1e-3)
    ours = compute_features(signal)
    assert ours.shape == (max(1, 1 + int(np.ceil((length - 400) / 160))), NUM_FBANKS)
    np.testing.assert_allclose(ours, reference_features(signal), atol=1e-5, rtol=0)


def test_matches_reference_on_shared_samples(shared_data):
    files = sorted((shared_data / "samples").rglob("*.wav")) + sorted((shared_data / "samples").glob("*.flac"))
    files += sorted((shared_data / "speechocean762" / "dev").rglob("*.flac"))[:6]
    assert len(files) >= 10
    for path in files:
        expected = reference_features(trim_silence_reference(read_audio(path)))
        np.testing.assert_allclose(file_features(path), expected, atol=1e-5, rtol=0, err_msg=str(path))


def test_frames_are_standardised(speech_file):
    features = compute_features(load_speech(speech_file))
    np.testing.assert_allclose(features.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(features.std(axis=1), 1, atol=1e-4)


def test_crop_or_pad():
    features = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)
    np.testing.assert_array_equal(crop_or_pad(features, 160), features[:160])
    crop = crop_or_pad(features, 160, np.random.default_rng(1))
    start = int(crop[0, 0]) // 64
    np.testing.assert_array_equal(crop, features[start : start + 160])
    padded = crop_or_pad(features[:50], 160)
    assert padded.shape == (160, 64) and not padded[50:].any()
    np.testing.assert_array_equal(padded[:50], features[:50])


def test_log_energies_normalise_the_log_of_the_reference_filterbank():
    signal = synthetic_speech(1.0) + np.float32(1e-3)
    energies, _ = fbank(signal, samplerate=16000, nfilt=64)
    log_energies = np.log(energies)
    expected = (log_energies - log_energies.mean(1, keepdims=True)) / log_energies.std(1, keepdims=True)
    ours = compute_features(signal, FeatureConfig(energies="log"))
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    assert np.abs(ours - compute_features(signal)).max() > 0.1


def test_utterance_normalisation_keeps_frame_loudness():
    signal = synthetic_speech(1.0) + np.float32(1e-3)
    log_energies = np.log(fbank(signal, samplerate=16000, nfilt=64)[0])
    ours = compute_features(signal, FeatureConfig(energies="log", normalisation="utterance"))
    np.testing.assert_allclose(ours, (log_energies - log_energies.mean()) / log_energies.std(), atol=1e-5, rtol=0)
    louder = compute_features(4 * signal, FeatureConfig(energies="log", normalisation="utterance"))
    np.testing.assert_allclose(louder, ours, atol=1e-4)
    frame_means = ours.mean(axis=1)
    assert frame_means.max() - frame_means.min() > 1.0


def test_feature_config_rejects_unknown_options_and_reads_old_files():
    with pytest.raises(ValueError, match="unknown filterbank energies 'cubic'"):
        FeatureConfig(energies="cubic")
    with pytest.raises(ValueError, match="unknown normalisation 'global'"):
        FeatureConfig(normalisation="global")
    assert FeatureConfig.from_dict({"sample_rate": 16000, "num_fbanks": 64, "trim": "energy"}) == FeatureConfig(trim="energy")


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum", "dither"])
def test_noise_hum_and_dither_are_not_speech_at_any_length_or_level(kind):
    from deep_speaker.errors import NoSpeechError
    from deep_speaker.features import require_speech
    from tests.helpers import noise

    for seconds in (1.0, 3.0, 20.0):  # brown noise drifts more the longer it runs: it passed the old check at 10 s
        for level in (0.5, 0.001):
            signal = noise(kind, seconds=seconds, seed=int(seconds)) * (level / 0.5 if kind != "dither" else 1)
            with pytest.raises(NoSpeechError, match="no speech found"):
                require_speech(signal)


def test_speech_loud_quiet_or_telephone_band_is_speech(shared_data):
    import soxr

    from deep_speaker.audio import crop_waveform, trim_silence
    from deep_speaker.features import MIN_SPEECH_VARIATION_DB, require_speech, spectro_temporal_variation, speech_check_energies

    files = (
        sorted((shared_data / "speechocean762").rglob("*.flac"))[::23]
        + sorted((shared_data / "samples").rglob("*.wav"))
        + sorted((shared_data / "asc").rglob("*.flac"))[::15]
    )
    rng = np.random.default_rng(0)
    for path in files:
        speech = load_speech(path)
        for version in (speech, 0.001 * speech, soxr.resample(soxr.resample(speech, 16000, 8000), 8000, 16000)):
            assert spectro_temporal_variation(speech_check_energies(version)) > MIN_SPEECH_VARIATION_DB + 2, path
        for seconds in (1, 2, 3):  # short crops, trimmed as the encoder trims them, are speech too
            require_speech(trim_silence(crop_waveform(speech, seconds * 16000, rng)), path)
    require_speech(synthetic_speech(1.0))
