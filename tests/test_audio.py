import numpy as np
import pytest
import soundfile as sf

from deep_speaker.audio import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    MissingAudioError,
    SilentAudioError,
    TooShortError,
    UnsupportedFormatError,
    crop_waveform,
    load_speech,
    read_audio,
    to_model_input,
    trim_silence,
    trim_silence_reference,
)
from tests.helpers import synthetic_speech


def test_reads_wav_as_mono_float32(speech_file):
    samples = read_audio(speech_file)
    assert samples.dtype == np.float32 and samples.ndim == 1
    np.testing.assert_allclose(samples, sf.read(speech_file, dtype="float32")[0])


@pytest.mark.parametrize(
    "suffix,container,subtype",
    [(".flac", None, None), (".ogg", "OGG", "VORBIS"), (".opus", "OGG", "OPUS"), (".mp3", "MP3", "MPEG_LAYER_III")],
)
def test_reads_compressed_formats(tmp_path, suffix, container, subtype):
    path = tmp_path / f"a{suffix}"
    sf.write(path, synthetic_speech(), 16000, format=container, subtype=subtype)
    samples = read_audio(path)
    assert abs(samples.size - synthetic_speech().size) < 2000
    assert np.abs(samples).max() > 0.1


def test_stereo_is_mixed_to_mono(tmp_path):
    left = synthetic_speech()
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), left / 2, atol=1e-7)


def test_resamples_to_16k_with_librosa_length(tmp_path):
    path = tmp_path / "48k.wav"
    signal = synthetic_speech(sample_rate=48000)
    sf.write(path, signal, 48000)
    samples = read_audio(path)
    assert samples.size == int(np.ceil(signal.size / 3))


def test_missing_file(tmp_path):
    with pytest.raises(MissingAudioError, match="nope.wav: no such file"):
        read_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty.wav: empty file"):
        read_audio(path)


def test_header_without_samples(tmp_path):
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="nosamples.wav: contains no samples"):
        read_audio(path)


def test_all_zero_file(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    with pytest.raises(SilentAudioError, match="zeros.wav: silent"):
        read_audio(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + b"\x00garbage" * 100)
    with pytest.raises(CorruptAudioError, match="broken.flac: cannot decode"):
        read_audio(path)


def test_unsupported_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio")
    with pytest.raises(UnsupportedFormatError, match=r"notes.txt: unsupported format '\.txt'"):
        read_audio(path)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    signal = synthetic_speech()
    signal[100] = np.nan
    sf.write(path, signal, 16000, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError, match="nan.wav: contains NaN"):
        read_audio(path)


def test_too_short_after_trimming(tmp_path):
    path = tmp_path / "click.wav"
    signal = np.zeros(16000, np.float32)
    signal[8000:8100] = 0.5
    sf.write(path, signal, 16000)
    with pytest.raises(TooShortError, match="click.wav: only .* samples of speech after 'reference' trimming"):
        load_speech(path)


def test_every_audio_error_is_one_type(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError):
        read_audio(path)


def test_waveform_shape_is_checked():
    with pytest.raises(AudioError, match="<waveform>: waveform must be 1-D"):
        to_model_input(np.zeros((2, 3, 4)), 16000)


def test_reference_trim_keeps_loud_span_with_exclusive_end():
    signal = np.full(100, 0.01, np.float32)
    signal[[30, 40, 50, 60]] = 1.0
    signal[[20, 70]] = 2.0  # the only samples above the 95th percentile (1.0)
    trimmed = trim_silence_reference(signal)
    assert trimmed.size == 50
    np.testing.assert_array_equal(trimmed, signal[20:70])


def test_energy_trim_removes_inner_pause():
    speech = synthetic_speech(1.0)
    pause = np.zeros(16000, np.float32)
    with_pause = np.concatenate([speech, pause, speech])
    reference = trim_silence(with_pause, "reference")
    energy = trim_silence(with_pause, "energy")
    assert energy.size < reference.size - 8000


def test_unknown_trim_method():
    with pytest.raises(ValueError, match="unknown trim method 'vad'"):
        trim_silence(synthetic_speech(), "vad")


def _wav_claiming(path, rate: int, seconds: float = 0.5):
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.sin(np.arange(int(16000 * seconds)) / 5) * 3000).astype("<i2").tobytes())
    return path


def _flac_claiming_2_to_the_36_samples(path):
    sf.write(path, synthetic_speech(0.5), 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    streaminfo = 8  # after "fLaC" and the metadata block header
    data[streaminfo + 13] |= 0x0F
    data[streaminfo + 14 : streaminfo + 18] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


def test_declared_rate_and_length_are_bounded_before_decoding(tmp_path, monkeypatch):
    from deep_speaker.errors import AudioLimitError

    with pytest.raises(AudioLimitError, match="one_hz.wav: sample rate 1 Hz is outside 4000-384000 Hz"):
        read_audio(_wav_claiming(tmp_path / "one_hz.wav", 1))
    with pytest.raises(
        AudioLimitError, match=r"huge.flac: \d+ s of audio, longer than the limit of 1200 s \(set DEEP_SPEAKER_MAX_AUDIO_SECONDS"
    ):
        read_audio(_flac_claiming_2_to_the_36_samples(tmp_path / "huge.flac"))
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.tile(synthetic_speech(1.0), 3), 16000)
    monkeypatch.setenv("DEEP_SPEAKER_MAX_AUDIO_SECONDS", "2")
    with pytest.raises(AudioLimitError, match="longer than the limit of 2 s"):
        read_audio(long_file)
    monkeypatch.setenv("DEEP_SPEAKER_MAX_AUDIO_SECONDS", "10")
    assert read_audio(long_file).size == 3 * synthetic_speech(1.0).size
    with pytest.raises(AudioLimitError, match="sample rate 2 Hz"):
        to_model_input(np.ones(1000, np.float32), 2)


def test_build_mfcc_lists_bombs_with_other_failures(tmp_path):
    from deep_speaker.data.cache import build_feature_cache
    from tests.helpers import write_corpus

    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    _wav_claiming(corpus / "spk0" / "one_hz.wav", 1)
    _flac_claiming_2_to_the_36_samples(corpus / "spk1" / "huge.flac")
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    assert summary.computed == 4 and len(summary.failures) == 2
    failures = (tmp_path / "wd" / "failures.csv").read_text()
    assert "one_hz.wav" in failures and "huge.flac" in failures and "outside 4000-384000 Hz" in failures


def test_resemblyzer_trim_raises_quiet_audio_and_cuts_long_silences():
    from deep_speaker.audio import normalize_volume, trim_silence

    speech = synthetic_speech(1.5) * 0.01
    louder = normalize_volume(speech)
    assert 10 * np.log10(np.mean(louder**2)) == pytest.approx(-30.0, abs=0.01)
    np.testing.assert_array_equal(normalize_volume(louder * 10), louder * 10)  # never lowered
    gap = np.zeros(32000, dtype=np.float32)  # 2 s of silence between two utterances
    trimmed = trim_silence(np.concatenate([speech, gap, speech]), "resemblyzer")
    assert trimmed.size % 480 == 0 and 2 * speech.size - 9600 < trimmed.size < 2 * speech.size + 12000


def test_crop_waveform_takes_a_window_centres_without_rng_and_repeats_short_recordings():
    waveform = np.arange(10, dtype=np.float32)
    assert list(crop_waveform(waveform, 4)) == [3, 4, 5, 6]
    window = crop_waveform(waveform, 4, np.random.default_rng(0))
    assert window.size == 4 and np.all(np.diff(window) == 1) and window[0] in range(7)
    assert list(crop_waveform(waveform[:3], 7)) == [1, 2, 0, 1, 2, 0, 1]  # repeated, not zero-padded


def test_a_waveform_beyond_full_scale_is_scaled_to_full_scale_and_the_voice_detector_never_wraps():
    from deep_speaker.audio import to_model_input, webrtcvad_speech_indices
    from tests.helpers import synthetic_speech

    speech = synthetic_speech(2.0, seed=3)
    loud = to_model_input(speech * 50, 16000)
    assert np.abs(loud).max() == pytest.approx(1.0)
    np.testing.assert_allclose(loud, speech / np.abs(speech).max(), rtol=1e-6)
    np.testing.assert_array_equal(to_model_input(speech, 16000), speech)  # within full scale: untouched
    np.testing.assert_array_equal(webrtcvad_speech_indices(speech * 50), webrtcvad_speech_indices(np.clip(speech * 50, -1, 1)))
