"""The WORLD voice converter moves a recording's pitch and envelope statistics to the target's."""

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.adversarial.conversion import world_convert
from deep_speaker.errors import AudioError
from tests.helpers import cli_in_process, synthetic_speech


def median_f0(waveform):
    import pyworld

    f0, _ = pyworld.dio(waveform.astype(np.float64), 16000, frame_period=5.0)
    return float(np.median(f0[f0 > 0]))


def test_the_converted_speech_takes_the_target_s_pitch_and_stays_valid_audio():
    source, target = synthetic_speech(2.0, pitch=100, seed=1), synthetic_speech(2.0, pitch=210, seed=2)
    converted = world_convert(source, target)
    assert converted.shape == source.shape and converted.dtype == np.float32
    assert np.all(np.abs(converted) <= 1) and np.all(np.isfinite(converted))
    assert abs(median_f0(converted) - median_f0(target)) < 0.1 * median_f0(target)
    assert np.sqrt(np.mean(converted**2)) == pytest.approx(np.sqrt(np.mean(source**2)), rel=0.1)


def test_unvoiced_input_is_refused_by_name(tmp_path, capsys):
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    with pytest.raises(AudioError, match="target: fewer than 10 voiced frames"):
        world_convert(synthetic_speech(1.0), noise)
    sf.write(tmp_path / "a.wav", synthetic_speech(1.5, pitch=100), 16000)
    sf.write(tmp_path / "b.wav", synthetic_speech(1.5, pitch=200, seed=3), 16000)
    done = cli_in_process(capsys, "convert-voice", tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "out.wav")
    assert done.returncode == 0 and sf.info(str(tmp_path / "out.wav")).frames == synthetic_speech(1.5).size
