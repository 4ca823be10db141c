"""The shipped models: small, calibrated by fingerprint, the default system loads with no argument, and the README
main command prints what the README says it prints."""

import re

import numpy as np
import pytest

from deep_speaker.assembly import load_encoder
from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.score_fusion import DEFAULT_SYSTEM, FusedEncoder
from deep_speaker.scoring.calibration import find_calibration
from tests.helpers import ROOT, cli_in_process, run_cli

SAMPLES = ROOT / "samples"
PHILIPPE = [SAMPLES / "PhilippeRemy" / "PhilippeRemy_001.wav", SAMPLES / "PhilippeRemy" / "PhilippeRemy_002.wav"]
OTHER = SAMPLES / "1255-90413-0001.flac"


def test_shipped_models_are_small_and_each_calibrated_by_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path))
    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_SYSTEM.is_file()
    assert sum(path.stat().st_size for path in DEFAULT_SYSTEM.parent.glob("*.keras")) <= 30 * 2**20
    system = load_encoder()
    assert isinstance(system, FusedEncoder) and SpeakerEncoder(DEFAULT_CHECKPOINT).fingerprint in [m.fingerprint for m in system.members]
    for encoder in (system, *system.members):
        calibration = find_calibration(encoder.fingerprint)  # no checkpoint path: found by identity alone
        assert calibration is not None and calibration.model == encoder.fingerprint
        assert calibration.eer < calibration.far1 < calibration.far0_1 and calibration.llr_scale > 0


def test_every_shipped_model_runs_from_the_onnx_copy_beside_it(tmp_path, monkeypatch):
    from deep_speaker.diarization.pipeline import DEFAULT_OVERLAP_DETECTOR
    from deep_speaker.exported import cached_onnx, cached_onnx_copy, runtime_copy_beside

    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path))  # an empty cache: only the shipped copies can be found
    members = [m.checkpoint for m in load_encoder().members]
    assert sorted(path.name for path in members) == ["deep_speaker.keras", "ge2e_resemblyzer.keras"]
    for checkpoint in members:
        copy = cached_onnx(checkpoint)
        assert copy is not None, f"{runtime_copy_beside(checkpoint)} is not an export of {checkpoint}: export it again"
    assert cached_onnx_copy(DEFAULT_OVERLAP_DETECTOR) is not None
    assert not (tmp_path / "exports").exists()


@pytest.mark.slow
def test_the_onnx_copies_embed_real_speech_as_keras_does():
    recordings = [*sorted(SAMPLES.rglob("*.wav")), OTHER]  # real speech of two speakers
    for onnx, keras in zip(load_encoder().members, load_encoder(runtime="keras").members):
        np.testing.assert_allclose(onnx.embed_many(recordings), keras.embed_many(recordings), atol=1e-4)


@pytest.mark.slow
def test_default_system_separates_the_sample_speakers():
    a, b, other = load_encoder().embed_many([*PHILIPPE, OTHER])
    assert abs(np.linalg.norm(a) - 1) < 1e-4
    assert float(a @ b) > float(a @ other) + 0.1


@pytest.mark.slow
def test_our_model_scores_the_same_from_numpy_features_and_in_the_graph():
    features, graph = SpeakerEncoder(DEFAULT_CHECKPOINT), SpeakerEncoder(DEFAULT_CHECKPOINT, waveform_in=True)
    for pair in (PHILIPPE, [PHILIPPE[0], OTHER]):
        assert features.score(*pair) == pytest.approx(graph.score(*pair), abs=1e-4)


@pytest.mark.slow
def test_readme_main_command_prints_what_the_readme_says():
    documented = re.search(r"The first command prints `([^`]+)`", (ROOT / "README.md").read_text().replace("\n", " ")).group(1)
    result = run_cli("verify", *PHILIPPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == documented and "decision: same speaker" in documented


@pytest.mark.slow
def test_other_speaker_is_rejected_at_the_default_operating_point(capsys):
    result = cli_in_process(capsys, "verify", PHILIPPE[0], OTHER)
    assert result.returncode == 0, result.stderr
    assert "decision: different speakers" in result.stdout


@pytest.mark.slow
def test_eval_trials_with_the_default_system_reports_the_model_cards_dev_eer(shared_data, tmp_path, capsys):
    """The model card's number (4.18 % EER, minDCF 0.443 on the dev trials) from the command a user runs."""
    import json

    dev = shared_data / "speechocean762"
    result = cli_in_process(
        capsys, "eval-trials", "--trials", dev / "dev_trials.txt", "--audio_root", dev / "dev", "--json", tmp_path / "dev.json"
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads((tmp_path / "dev.json").read_text())
    assert reported["eer"] == pytest.approx(0.0418, abs=0.0005) and reported["min_dcf_p0.01"] == pytest.approx(0.443, abs=0.001)
    card = (ROOT / "deep_speaker" / "pretrained" / "README.md").read_text()
    assert "4.18 %" in card


@pytest.mark.slow
def test_a_float_copy_far_above_full_scale_is_still_the_same_speaker(tmp_path, capsys):
    """x50 in a float WAV: peaks at 15 or more. The GE2E member's voice detector once cast it to int16 unclipped
    (wrapping round) and the default system called the copy another speaker."""
    import soundfile as sf

    samples, rate = sf.read(PHILIPPE[0], dtype="float32")
    loud = tmp_path / "loud.wav"
    sf.write(loud, samples * 50, rate, subtype="FLOAT")
    assert np.abs(sf.read(loud)[0]).max() > 10
    result = cli_in_process(capsys, "verify", PHILIPPE[0], loud)
    assert result.returncode == 0 and "decision: same speaker" in result.stdout, result.stdout + result.stderr
    assert float(re.search(r"score = ([0-9.]+)", result.stdout).group(1)) > 0.95


@pytest.mark.slow
def test_bfloat16_runs_the_default_system_as_float32_does(capsys):
    """Every layer's sublayers follow its dtype policy (the ECAPA-TDNN's squeeze-excitation once mixed bfloat16
    with float32 and failed)."""
    exact = load_encoder().embed_many(PHILIPPE)
    half = load_encoder(runtime="keras", bfloat16=True).embed_many(PHILIPPE)
    assert np.min(np.sum(exact * half, axis=1)) > 0.995
    result = cli_in_process(capsys, "verify", *PHILIPPE, "--bfloat16", "--runtime", "keras")
    assert result.returncode == 0 and "decision: same speaker" in result.stdout, result.stderr
    refused = cli_in_process(capsys, "verify", *PHILIPPE, "--bfloat16")  # ONNX Runtime, the default, has no bfloat16
    assert refused.returncode == 2 and "--runtime keras" in refused.stderr
