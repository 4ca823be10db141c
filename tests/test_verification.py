"""The Verifier: thresholds from the model's calibration or given, decisions, 'unknown', the spoof gate."""

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.audio import name_of
from deep_speaker.enrol import SpeakerRegistry
from deep_speaker.errors import CalibrationError
from deep_speaker.scoring import Scorer
from deep_speaker.scoring.calibration import Calibration
from deep_speaker.verification import UNKNOWN, Verifier
from tests.helpers import LookupEncoder, synthetic_speech


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _calibration(model: str = "model-a") -> Calibration:
    return Calibration(eer=0.3, far1=0.5, far0_1=0.7, eer_percent=9.0, trials="t", model=model)


def test_decisions_follow_the_operating_point(home):
    encoder = LookupEncoder()
    assert Verifier(encoder, calibration=_calibration()).verify("alice_0.wav", "alice_1.wav").accepted is True
    decision = Verifier(encoder, calibration=_calibration(), operating_point="far0.1").verify("alice_0.wav", "carol_0.wav")
    assert decision.accepted is False and decision.threshold == 0.7 and "operating point far0.1" in str(decision)
    given = Verifier(encoder, calibration=_calibration(), threshold=-1.0).verify("alice_0.wav", "carol_0.wav")
    assert given.accepted is True and given.source == "threshold given"


def test_a_calibration_with_an_llr_map_reports_the_llr_and_probability(home):
    calibration = Calibration(eer=0.3, far1=0.5, far0_1=0.7, eer_percent=9.0, trials="t", model="model-a", llr_scale=20.0, llr_offset=-6.0)
    decision = Verifier(LookupEncoder(), calibration=calibration).verify("alice_0.wav", "alice_1.wav")
    assert decision.llr == pytest.approx(20.0 * decision.score - 6.0)
    assert decision.probability == pytest.approx(1 / (1 + np.exp(-decision.llr)))
    assert f"LLR = {decision.llr:+.2f}" in str(decision)
    assert Verifier(LookupEncoder(), calibration=_calibration()).verify("alice_0.wav", "alice_1.wav").llr is None


def test_no_calibration_gives_no_decision_and_bad_thresholds_are_refused(home):
    decision = Verifier(LookupEncoder("uncalibrated")).verify("alice_0.wav", "alice_1.wav")
    assert decision.accepted is None and "not calibrated" in str(decision)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(CalibrationError, match="finite"):
            Verifier(LookupEncoder(), threshold=bad)
    with pytest.raises(CalibrationError, match="unknown operating point"):
        Verifier(LookupEncoder(), operating_point="far5")


def test_identify_ranks_and_says_unknown(tmp_path, home):
    encoder = LookupEncoder()
    with SpeakerRegistry(tmp_path / "s.db", encoder) as registry:
        registry.enroll("alice", ["alice_0.wav"])
        registry.enroll("bob", ["bob_0.wav"])
        found = Verifier(encoder, calibration=_calibration()).identify("alice_1.wav", registry)
        assert found.speaker == "alice" and [n for n, _ in found.ranked] == ["alice", "bob"]
        stranger = Verifier(encoder, calibration=_calibration()).identify("stranger_0.wav", registry)
        assert stranger.speaker == UNKNOWN and "speaker: unknown" in str(stranger)


def test_spoof_gate_rejects_with_its_reason(tmp_path, home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("alice_0", "alice_1", "bob_0", "bob_1"):  # with a gate, recordings are decoded once for both
        sf.write(f"{name}.wav", synthetic_speech(0.5), 16000)
    encoder = LookupEncoder()
    gate = lambda recording: "replayed audio" if str(name_of(recording)).startswith("bob") else None  # noqa: E731
    verifier = Verifier(encoder, calibration=_calibration(), spoof_gate=gate)
    assert verifier.verify("alice_0.wav", "alice_1.wav").accepted is True
    rejected = verifier.verify("bob_0.wav", "bob_1.wav")
    assert rejected.accepted is False and "replayed audio" in str(rejected) and rejected.score > 0.9
    with SpeakerRegistry(tmp_path / "s.db", encoder) as registry:
        registry.enroll("bob", ["bob_0.wav"])
        assert verifier.identify("bob_1.wav", registry).speaker == UNKNOWN


def test_scores_come_from_the_scorer(home):
    class Negated(Scorer):
        name = "negated"

        def score_matrix(self, enroll, test):
            return -np.atleast_2d(enroll) @ np.atleast_2d(test).T

    decision = Verifier(LookupEncoder(), scorer=Negated(), threshold=0.0).verify("alice_0.wav", "alice_0.wav")
    assert decision.score == pytest.approx(-1.0) and decision.accepted is False
