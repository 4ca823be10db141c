"""The model shipped in checkpoints/: loads with no argument, is calibrated, and the README main command works."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.enrol import Calibration

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def test_shipped_model_is_small_and_calibrated():
    assert DEFAULT_CHECKPOINT.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size <= 30 * 2**20
    calibration = Calibration.load(DEFAULT_CHECKPOINT)
    assert calibration is not None and calibration.eer < calibration.far1 < calibration.far0_1


def test_default_encoder_separates_the_sample_speakers():
    encoder = SpeakerEncoder()
    a, b, other = encoder.embed_many(
        [SAMPLES / "PhilippeRemy" / "PhilippeRemy_001.wav", SAMPLES / "PhilippeRemy" / "PhilippeRemy_002.wav", SAMPLES / "1255-90413-0001.flac"]
    )
    assert abs(np.linalg.norm(a) - 1) < 1e-4
    assert float(a @ b) > float(a @ other) + 0.1


def test_readme_main_command():
    result = subprocess.run(
        [sys.executable, "cli.py", "verify", "samples/PhilippeRemy/PhilippeRemy_001.wav", "samples/PhilippeRemy/PhilippeRemy_002.wav"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "score = " in result.stdout and "(operating point far1)" in result.stdout
    assert "decision: same speaker" in result.stdout


def test_other_speaker_is_rejected_at_the_default_operating_point():
    result = subprocess.run(
        [sys.executable, "cli.py", "verify", "samples/PhilippeRemy/PhilippeRemy_001.wav", "samples/1255-90413-0001.flac"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "decision: different speakers" in result.stdout
