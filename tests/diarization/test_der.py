"""RTTM round trip and the diarization error rate on hand-computed cases."""

import pytest

from deep_speaker.diarization import Segment, diarization_error_rate, read_rttm, write_rttm
from deep_speaker.diarization.rttm import RTTMError

REFERENCE = [Segment(0.0, 10.0, "A"), Segment(10.0, 20.0, "B")]


def test_rttm_round_trip_and_bad_lines(tmp_path):
    segments = [Segment(1.25, 3.5, "alice", "meeting"), Segment(0.0, 1.0, "bob", "meeting")]
    path = write_rttm(tmp_path / "out.rttm", segments)
    assert path.read_text().splitlines()[0] == "SPEAKER meeting 1 0.000 1.000 <NA> <NA> bob <NA> <NA>"
    assert read_rttm(path) == sorted(segments, key=lambda s: s.start)
    (tmp_path / "bad.rttm").write_text("SPEAKER meeting 1 zero 1.0 <NA> <NA> bob <NA> <NA>\n")
    with pytest.raises(RTTMError, match=r"bad.rttm:1: not an RTTM SPEAKER line"):
        read_rttm(tmp_path / "bad.rttm")


def test_perfect_renamed_hypothesis_scores_zero():
    hypothesis = [Segment(0.0, 10.0, "spk1"), Segment(10.0, 20.0, "spk0")]
    assert diarization_error_rate(REFERENCE, hypothesis).rate == 0.0


def test_everything_one_speaker_is_half_confusion_without_collar():
    error = diarization_error_rate(REFERENCE, [Segment(0.0, 20.0, "x")], collar=0.0)
    assert (error.missed, error.false_alarm, error.confusion, error.reference) == pytest.approx((0, 0, 10, 20))
    assert error.rate == pytest.approx(0.5)


def test_miss_false_alarm_and_collar_by_hand():
    # hypothesis: A from 1 to 10 (1 s missed), B from 10 to 22 (2 s false alarm); collar 0.25 s around 0, 10, 20
    hypothesis = [Segment(1.0, 10.0, "A"), Segment(10.0, 22.0, "B")]
    error = diarization_error_rate(REFERENCE, hypothesis, collar=0.25)
    # scored reference: 20 s minus the collars' speech (0.25 s after 0, 0.5 s around 10, 0.25 s before 20) = 19 s
    assert error.reference == pytest.approx(19.0)
    assert error.missed == pytest.approx(0.75)  # 0.25-1.0
    assert error.false_alarm == pytest.approx(1.75)  # 20.25-22
    assert error.confusion == pytest.approx(0.0)


def test_overlapped_speech_is_scored():
    reference = [Segment(0.0, 10.0, "A"), Segment(5.0, 10.0, "B")]  # 15 s of speech, 5 of it overlapped
    only_a = diarization_error_rate(reference, [Segment(0.0, 10.0, "h")], collar=0.0)
    assert only_a.missed == pytest.approx(5.0) and only_a.rate == pytest.approx(5 / 15)
    wrong_pair = diarization_error_rate(reference, [Segment(0.0, 10.0, "h1"), Segment(5.0, 10.0, "h2"), Segment(12.0, 13.0, "h3")], collar=0.0)
    assert wrong_pair.false_alarm == pytest.approx(1.0) and wrong_pair.confusion == pytest.approx(0.0)
