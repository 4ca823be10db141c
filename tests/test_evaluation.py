import json

import numpy as np
import pytest

from deep_speaker.errors import TrialsError
from deep_speaker.evaluation import Trials, closed_set_metrics, closed_set_trials, score_trials
from tests.helpers import cli_in_process, save_tiny_model, write_corpus


def test_trials_read_and_files(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n\n0 b/1.wav a/2.wav\n")
    trials = Trials.read(path)
    assert trials.labels.tolist() == [1, 0, 0]
    assert trials.files() == ["a/1.wav", "b/1.wav", "a/2.wav"]


@pytest.mark.parametrize(
    "text,problem",
    [
        ("1 a b\n2 a c\n", "label 0 or 1"),
        ("1 a\n", "expected 'label enroll test'"),
        ("1 a b\n1 b c\n", "both target"),
        (b"\x89PNG\xff\xfe", "not a text trial list"),
    ],
)
def test_trials_errors(tmp_path, text, problem):
    path = tmp_path / "t.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(TrialsError, match=problem):
        Trials.read(path)


def test_score_trials_is_cosine(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1 x y\n0 x z\n")
    scores = score_trials({"x": np.array([1.0, 0.0]), "y": np.array([2.0, 0.0]), "z": np.array([1.0, 1.0])}, Trials.read(path))
    np.testing.assert_allclose(scores, [1.0, np.sqrt(0.5)])


def test_closed_set_layout():
    labels = np.repeat(np.arange(120), 2)
    layout = closed_set_trials(labels)
    assert len(layout) == 120
    for anchor, positive, negatives in layout:
        assert labels[anchor] == labels[positive] and anchor != positive
        assert len(negatives) == 99
        negative_speakers = labels[negatives]
        assert labels[anchor] not in negative_speakers and len(set(negative_speakers)) == 99


def test_closed_set_metrics_perfect_and_random():
    labels = np.repeat(np.arange(30), 2)
    perfect = np.eye(30)[labels]
    metrics = closed_set_metrics(perfect, labels)
    assert metrics.equal_error_rate == 0.0 and metrics.f_measure == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((60, 16))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assert closed_set_metrics(noise, labels).equal_error_rate > 0.2


def test_cli_eval_trials_writes_json_and_plot(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=2, suffix=".wav")
    trials = tmp_path / "trials.txt"
    trials.write_text(
        "1 spk0/utt0.wav spk0/utt1.wav\n1 spk1/utt0.wav spk1/utt1.wav\n0 spk0/utt0.wav spk1/utt0.wav\n0 spk1/utt1.wav spk2/utt0.wav\n0 spk2/utt1.wav spk0/utt1.wav\n"
    )
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    out, plot = tmp_path / "r.json", tmp_path / "curves.png"
    result = cli_in_process(
        capsys, "eval-trials", "--checkpoint_file", checkpoint, "--trials", trials, "--audio_root", corpus, "--json", out, "--plot", plot
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads(out.read_text())
    assert 0.0 <= numbers["eer"] <= 1.0 and numbers["target_trials"] == 2 and numbers["nontarget_trials"] == 3
    assert {"min_dcf_p0.01", "min_dcf_p0.001", "eer_threshold"} <= set(numbers)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "EER = " in result.stdout


def test_cli_eval_trials_missing_audio(tmp_path, capsys):
    trials = tmp_path / "trials.txt"
    trials.write_text("1 a.wav b.wav\n0 a.wav c.wav\n")
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    result = cli_in_process(capsys, "eval-trials", "--checkpoint_file", checkpoint, "--trials", trials, "--audio_root", tmp_path)
    assert result.returncode == 2 and "a.wav: no such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_fits_a_back_end_and_scores_and_calibrates_with_it(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=4, utterances=3, suffix=".wav")
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    sample = corpus / "spk0" / "utt0.wav"
    missing = cli_in_process(capsys, "verify", sample, sample, "--checkpoint_file", checkpoint, "--scorer", "asnorm", "--threshold", "0")
    assert (
        missing.returncode == 2
        and "no asnorm back end fitted for model" in missing.stderr
        and "(run `fit-backend --scorer asnorm --audio-dir DIR` on training speakers' recordings first)" in missing.stderr
    )
    fitted = cli_in_process(capsys, "fit-backend", "--audio_dir", corpus, "--checkpoint_file", checkpoint, "--scorer", "asnorm")
    assert fitted.returncode == 0 and "fitted asnorm for model" in fitted.stdout
    trials = tmp_path / "trials.txt"
    trials.write_text("1 spk0/utt0.wav spk0/utt1.wav\n0 spk0/utt0.wav spk1/utt0.wav\n0 spk2/utt1.wav spk3/utt0.wav\n")
    result = cli_in_process(
        capsys,
        "eval-trials",
        "--checkpoint_file",
        checkpoint,
        "--trials",
        trials,
        "--audio_root",
        corpus,
        "--scorer",
        "asnorm",
        "--json",
        tmp_path / "r.json",
    )
    assert result.returncode == 0 and json.loads((tmp_path / "r.json").read_text())["scorer"] == "asnorm"
    verified = cli_in_process(capsys, "verify", sample, sample, "--checkpoint_file", checkpoint, "--scorer", "asnorm")
    assert verified.returncode == 0 and "not calibrated for asnorm scores" in verified.stdout


def test_snorm_is_fitted_on_unlabelled_recordings_of_the_domain_in_one_flat_folder(tmp_path, capsys, caplog):
    import shutil

    import soundfile as sf

    from deep_speaker.scoring import load_scorer
    from tests.helpers import noise

    corpus = write_corpus(tmp_path / "corpus", speakers=7, utterances=3, suffix=".wav")
    flat = tmp_path / "domain"
    flat.mkdir()
    for k, path in enumerate(sorted(corpus.rglob("*.wav"))):
        shutil.copy(path, flat / f"{k:02d}.wav")  # no speaker folders: the labels are unknown
    sf.write(flat / "hiss.wav", noise("white", 2.0, level=0.2), 16000)
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    fitted = cli_in_process(capsys, "fit-backend", "--audio_dir", flat, "--checkpoint_file", checkpoint, "--scorer", "snorm")
    assert fitted.returncode == 0 and "fitted snorm for model" in fitted.stdout, fitted.stderr
    assert "1 of 22 recordings refused and left out of the cohort" in caplog.text and "hiss.wav" in caplog.text
    from deep_speaker.embedding import SpeakerEncoder

    scorer = load_scorer("snorm", SpeakerEncoder(checkpoint).fingerprint)
    assert scorer.state["cohort"].shape[0] == 21
    labelled = cli_in_process(capsys, "fit-backend", "--audio_dir", flat, "--checkpoint_file", checkpoint, "--scorer", "asnorm")
    assert labelled.returncode == 2 and "put each speaker's files in a folder" in labelled.stderr


def test_eval_trials_completes_without_recordings_it_refuses_and_names_them(tmp_path, capsys):
    import soundfile as sf

    from tests.helpers import noise, synthetic_speech

    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=2, suffix=".wav")
    sf.write(corpus / "spk2" / "hiss.wav", noise("white", 2.0, level=0.2), 16000)
    sf.write(corpus / "spk2" / "blip.wav", synthetic_speech(1.0)[8000:8200], 16000)  # 12 ms
    trials = tmp_path / "trials.txt"
    trials.write_text(
        "1 spk0/utt0.wav spk0/utt1.wav\n1 spk1/utt0.wav spk1/utt1.wav\n0 spk0/utt0.wav spk1/utt0.wav\n"
        "0 spk1/utt1.wav spk2/hiss.wav\n1 spk2/hiss.wav spk2/utt0.wav\n0 spk2/blip.wav spk0/utt1.wav\n0 spk2/utt1.wav spk0/utt1.wav\n"
    )
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    out, scores = tmp_path / "r.json", tmp_path / "scores.txt"
    done = cli_in_process(
        capsys,
        "eval-trials",
        "--checkpoint_file",
        checkpoint,
        "--trials",
        trials,
        "--audio_root",
        corpus,
        "--json",
        out,
        "--scores",
        scores,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "warning: refused spk2/hiss.wav: " in done.stderr
        and "no speech found" in done.stderr
        and "warning: refused spk2/blip.wav" in done.stderr
    )
    assert (
        "2 recording(s) refused; their 3 trials are excluded" in done.stderr and "3 trials excluded: 2 recording(s) refused" in done.stdout
    )
    numbers = json.loads(out.read_text())
    assert numbers["refused_trials"] == 3 and sorted(numbers["refused_recordings"]) == ["spk2/blip.wav", "spk2/hiss.wav"]
    assert numbers["target_trials"] == 2 and numbers["nontarget_trials"] == 2
    lines = scores.read_text().splitlines()
    assert len(lines) == 7 and lines[3].endswith(" refused") and lines[5].endswith(" refused")
    assert float(lines[0].split()[3]) == pytest.approx(float(lines[0].split()[3])) and lines[0].startswith("1 spk0/utt0.wav spk0/utt1.wav ")
    strict = cli_in_process(
        capsys, "eval-trials", "--checkpoint_file", checkpoint, "--trials", trials, "--audio_root", corpus, "--on-refused", "fail"
    )
    assert strict.returncode == 2 and "hiss.wav: no speech found" in strict.stderr
