"""Everyday conveniences of the command line: --version, --quiet, --json, embed's inputs and names."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import deep_speaker
from tests.helpers import ROOT, cli_in_process, save_tiny_model, synthetic_speech


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", width=0.125, embedding_dim=32)


@pytest.fixture
def recordings(tmp_path):
    paths = []
    for speaker, pitch in (("ann", 110), ("bob", 190)):
        for take in range(2):
            path = tmp_path / "corpus" / speaker / f"{take}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synthetic_speech(1.2, pitch=pitch + 5 * take, seed=take), 16000)
            paths.append(path)
    return paths


def test_version_comes_from_one_place_and_needs_no_tensorflow():
    script = "import sys; from deep_speaker.cli import main; main(['--version'])"
    checked = subprocess.run(
        [sys.executable, "-c", script + "\n", "--"], capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}
    )
    assert checked.stdout.strip() == f"deep-speaker {deep_speaker.__version__}"
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()  # the wheel reads deep_speaker.__version__
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from deep_speaker.cli import main\ntry: main(['--version'])\nexcept SystemExit: pass\n"
         "print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert loaded.stdout.strip().endswith("False")


def test_json_output_of_verify_enrol_and_identify(model, recordings, tmp_path, capsys):
    common = ["--checkpoint-file", model]
    verified = cli_in_process(capsys, "verify", recordings[0], recordings[1], *common, "--threshold", "0.2", "--json")
    decision = json.loads(verified.stdout)
    assert decision["decision"] in ("same speaker", "different speakers") and decision["threshold"] == 0.2
    assert decision["accepted"] == (decision["score"] >= 0.2) and decision["operating_point"] == "far1"
    store = ["--store", tmp_path / "s.db"]
    enrolled = cli_in_process(capsys, "enroll", "ann", *recordings[:2], *common, *store, "--json")
    assert json.loads(enrolled.stdout) == {
        "enrolled": "ann",
        "files": [str(p) for p in recordings[:2]],
        "store": str(tmp_path / "s.db"),
        "model": json.loads(enrolled.stdout)["model"],
    }
    identified = json.loads(cli_in_process(capsys, "identify", recordings[2], *common, *store, "--threshold", "0.99", "--json").stdout)
    assert identified["ranked"][0]["name"] == "ann" and identified["speaker"] == "unknown" and identified["threshold"] == 0.99


def test_embed_takes_folders_and_lists_and_writes_the_names(model, recordings, tmp_path, capsys):
    out = tmp_path / "all.npy"
    made = cli_in_process(capsys, "embed", tmp_path / "corpus", "--checkpoint-file", model, "--out", out)
    assert made.returncode == 0, made.stderr
    names = (tmp_path / "all.names.txt").read_text().splitlines()
    assert names == ["ann/0.wav", "ann/1.wav", "bob/0.wav", "bob/1.wav"] and np.load(out).shape == (4, 32)
    (tmp_path / "wav.scp").write_text(f"first {recordings[3]}\nsecond corpus/ann/0.wav\n")
    (tmp_path / "list.txt").write_text("corpus/bob/1.wav\n\n")
    made = cli_in_process(capsys, "embed", tmp_path / "wav.scp", tmp_path / "list.txt", "--checkpoint-file", model, "--out", out)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "all.names.txt").read_text().splitlines() == ["first", "second", "corpus/bob/1.wav"]
    whole = np.load(tmp_path / "all.npy")
    np.testing.assert_allclose(whole[0], whole[2], atol=1e-6)  # bob/1 twice, by the scp (absolute) and the list (relative)
    (tmp_path / "pipe.scp").write_text("a sox x.wav -t wav - |\n")
    refused = cli_in_process(capsys, "embed", tmp_path / "pipe.scp", "--checkpoint-file", model, "--out", out)
    assert refused.returncode == 2 and "command pipe" in refused.stderr


def test_quiet_anywhere_silences_progress_and_verbose_logs(model, recordings, tmp_path, capsys):
    arguments = ["embed", *recordings, "--checkpoint-file", model, "--out", tmp_path / "e.npy"]
    assert "embed" in cli_in_process(capsys, *arguments).stderr  # the progress bar, by default
    assert cli_in_process(capsys, "--quiet", *arguments).stderr == ""
    assert cli_in_process(capsys, *arguments, "--quiet").stderr == ""
    from deep_speaker.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--quiet", "fuse", "a", "b", "c.fusion.json", "--audio-dir", "d"]).quiet is True  # not reset
    assert parser.parse_args(["fuse", "a", "b", "c.fusion.json", "--audio-dir", "d"]).quiet is False
    assert parser.parse_args(["serve", "--no-access-log"]).access_log is False and parser.parse_args(["serve"]).access_log
    with pytest.raises(SystemExit):
        parser.parse_args(["--quiet", "--verbose", "list"])


def test_a_corpus_job_names_a_missing_file_before_any_model_or_ray_starts(tmp_path, capsys):
    (tmp_path / "list.txt").write_text("absent.wav\nalso_absent.wav\n")
    for command in ("embed-corpus", "diarize-corpus"):
        refused = cli_in_process(capsys, command, tmp_path / "list.txt", "--out-dir", tmp_path / "out", "--checkpoint-file", "none.keras")
        assert refused.returncode == 2 and "absent.wav: no such file (and 1 more)" in refused.stderr and "Traceback" not in refused.stderr
