"""The shipped model: loads with no argument, is calibrated by its fingerprint, and the README main command works."""

import numpy as np
import pytest

from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.scoring.calibration import find_calibration
from tests.helpers import ROOT, cli_in_process, run_cli

SAMPLES = ROOT / "samples"
PHILIPPE = [SAMPLES / "PhilippeRemy" / "PhilippeRemy_001.wav", SAMPLES / "PhilippeRemy" / "PhilippeRemy_002.wav"]


def test_shipped_model_is_small_and_calibrated_by_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path))
    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_CHECKPOINT.stat().st_size <= 30 * 2**20
    encoder = SpeakerEncoder()
    calibration = find_calibration(encoder.fingerprint)  # no checkpoint path: found by identity alone
    assert calibration is not None and calibration.model == encoder.fingerprint
    assert calibration.eer < calibration.far1 < calibration.far0_1


def test_default_encoder_separates_the_sample_speakers():
    encoder = SpeakerEncoder()
    a, b, other = encoder.embed_many([*PHILIPPE, SAMPLES / "1255-90413-0001.flac"])
    assert abs(np.linalg.norm(a) - 1) < 1e-4
    assert float(a @ b) > float(a @ other) + 0.1


@pytest.mark.parametrize("waveform_in", [False, True])
def test_same_scores_as_version_0_1(waveform_in):
    """0.7646 and 0.3889: what version 0.1 (feature-in model, NumPy features) printed for these pairs."""
    encoder = SpeakerEncoder(waveform_in=waveform_in)
    assert encoder.score(*PHILIPPE) == pytest.approx(0.7646, abs=1e-4)
    assert encoder.score(PHILIPPE[0], SAMPLES / "1255-90413-0001.flac") == pytest.approx(0.3889, abs=1e-4)


def test_readme_main_command():
    result = run_cli("verify", *PHILIPPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "score = 0.7646  threshold = 0.5314 (operating point far1)  decision: same speaker"


def test_other_speaker_is_rejected_at_the_default_operating_point(capsys):
    result = cli_in_process(capsys, "verify", PHILIPPE[0], SAMPLES / "1255-90413-0001.flac")
    assert result.returncode == 0, result.stderr
    assert "decision: different speakers" in result.stdout
