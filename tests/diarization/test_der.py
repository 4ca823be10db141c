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
    spaced = write_rttm(tmp_path / "spaced.rttm", [Segment(0.0, 1.0, "dr smith", "board meeting\t2")])  # a file name with spaces
    assert read_rttm(spaced) == [Segment(0.0, 1.0, "dr_smith", "board_meeting_2")]


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
    wrong_pair = diarization_error_rate(
        reference, [Segment(0.0, 10.0, "h1"), Segment(5.0, 10.0, "h2"), Segment(12.0, 13.0, "h3")], collar=0.0
    )
    assert wrong_pair.false_alarm == pytest.approx(1.0) and wrong_pair.confusion == pytest.approx(0.0)


def test_jer_skip_overlap_and_uem_by_hand():
    # everything "x": A's 10 s map to x, B is mapped to nobody -> JER (0.5 + 1) / 2 (A: |A & x| / |A | x| = 10 / 20)
    error = diarization_error_rate(REFERENCE, [Segment(0.0, 20.0, "x")], collar=0.0)
    assert error.speakers == 2 and error.jer == pytest.approx(0.75)
    # two speakers overlap 8-10; the hypothesis has A to 10 and B from 10: 2 s of B missed in the overlap
    overlapping = [Segment(0.0, 10.0, "A"), Segment(8.0, 20.0, "B")]
    hypothesis = [Segment(0.0, 10.0, "a"), Segment(10.0, 20.0, "b")]
    scored = diarization_error_rate(overlapping, hypothesis, collar=0.0)
    assert (scored.missed, scored.reference) == pytest.approx((2.0, 22.0))
    skipped = diarization_error_rate(overlapping, hypothesis, collar=0.0, skip_overlap=True)
    assert (skipped.missed, skipped.reference, skipped.rate) == pytest.approx((0.0, 18.0, 0.0))
    # a UEM scoring only 5-15: A 5-10 right, B 10-15 right, the rest unscored
    windowed = diarization_error_rate(REFERENCE, [Segment(0.0, 20.0, "x")], collar=0.0, uem=[(5.0, 15.0)])
    assert (windowed.reference, windowed.confusion) == pytest.approx((10.0, 5.0))
    assert (error + windowed).reference == pytest.approx(30.0)


def test_uem_reading_and_bad_lines(tmp_path):
    from deep_speaker.diarization import read_uem

    (tmp_path / "a.uem").write_text(";; comment\nmeeting 1 0.000 12.500\nmeeting 1 20 30\nother 1 0 5\n")
    assert read_uem(tmp_path / "a.uem") == {"meeting": [(0.0, 12.5), (20.0, 30.0)], "other": [(0.0, 5.0)]}
    (tmp_path / "bad.uem").write_text("meeting 1 5 2\n")
    with pytest.raises(RTTMError, match=r"bad.uem:1: not a UEM line"):
        read_uem(tmp_path / "bad.uem")


def test_der_and_jer_agree_with_pyannote_metrics_on_random_turns():
    """pyannote.metrics as the oracle (its collar is the whole unscored width: twice md-eval's)."""
    import numpy as np
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    rng = np.random.default_rng(0)

    def turns(speakers, count):
        """Random turns, each speaker's merged where they overlap (a speaker talks once at a time)."""
        merged = []
        for speaker in range(speakers):
            spans = sorted(
                (round(float(s), 3), round(float(s + rng.uniform(0.5, 6)), 3)) for s in rng.uniform(0, 60, count // speakers + 1)
            )
            for start, end in spans:
                if merged and merged[-1].speaker == f"s{speaker}" and start <= merged[-1].end:
                    merged[-1] = Segment(merged[-1].start, max(end, merged[-1].end), f"s{speaker}")
                else:
                    merged.append(Segment(start, end, f"s{speaker}"))
        return merged

    def annotation(segments):
        result = Annotation()
        for k, s in enumerate(segments):
            result[Span(s.start, s.end), k] = s.speaker
        return result

    for case in range(12):
        reference, hypothesis = turns(3, 14), turns(4, 16)
        collar, skip, uem = (0.0, 0.25)[case % 2], case % 3 == 0, [(5.0, 50.0)] if case % 4 == 1 else None
        ours = diarization_error_rate(reference, hypothesis, collar, skip, uem)
        kwargs = {"uem": Timeline([Span(*region) for region in uem])} if uem else {"uem": Timeline([Span(0, 80)])}
        der = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip)(
            annotation(reference), annotation(hypothesis), detailed=True, **kwargs
        )
        jer = JaccardErrorRate(collar=2 * collar, skip_overlap=skip)(annotation(reference), annotation(hypothesis), **kwargs)
        assert ours.rate == pytest.approx(der["diarization error rate"], abs=2e-3), case
        assert ours.missed == pytest.approx(der["missed detection"], abs=0.02) and ours.confusion == pytest.approx(
            der["confusion"], abs=0.02
        ), case
        assert ours.jer == pytest.approx(jer, abs=2e-3), case


def test_the_score_diarization_command_per_recording_and_total(tmp_path, capsys):
    import json

    from deep_speaker.diarization import write_rttm
    from tests.helpers import cli_in_process

    reference = [Segment(0.0, 10.0, "A", "one"), Segment(10.0, 20.0, "B", "one"), Segment(0.0, 5.0, "C", "two")]
    hypothesis = [Segment(0.0, 20.0, "x", "one"), Segment(0.0, 5.0, "y", "two"), Segment(0.0, 1.0, "z", "three")]
    write_rttm(tmp_path / "ref.rttm", reference)
    write_rttm(tmp_path / "hyp.rttm", hypothesis)
    result = cli_in_process(
        capsys, "score-diarization", tmp_path / "ref.rttm", tmp_path / "hyp.rttm", "--collar", "0", "--json", tmp_path / "s.json"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("one\tDER = 50.00 %") and lines[1].startswith("two\tDER = 0.00 %")
    assert lines[2].startswith("TOTAL (2 recording(s), collar 0 s)\tDER = 40.00 %") and "JER = 50.00 % (3 speakers)" in lines[2]
    assert "1 recording(s) of" in result.stderr and "three" in result.stderr
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["total"]["der"] == pytest.approx(0.4) and set(document["recordings"]) == {"one", "two"}
    empty = tmp_path / "empty.rttm"
    empty.write_text("")
    refused = cli_in_process(capsys, "score-diarization", empty, tmp_path / "hyp.rttm")
    assert refused.returncode == 2 and "no SPEAKER lines" in refused.stderr
