import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_in_process, save_tiny_model, write_corpus


def _run(*command):
    return subprocess.run([*map(str, command)], capture_output=True, text=True, cwd=ROOT)


def test_installed_command_is_cli_py():
    executable = Path(sys.executable).parent / "deep-speaker"
    if not executable.exists():
        executable = shutil.which("deep-speaker")
    if executable is None:
        pytest.skip("deep-speaker is not installed in this environment (pip install -e .)")
    installed, script = _run(executable, "-h"), _run(sys.executable, "cli.py", "-h")
    assert installed.returncode == script.returncode == 0
    assert installed.stdout == script.stdout
    assert "build-mfcc" in script.stdout and "eval-trials" in script.stdout and "train-head" in script.stdout


def test_every_subcommand_has_help(capsys):
    from deep_speaker.cli import main

    for command in (
        "build-mfcc-cache",
        "train-softmax",
        "train-triplet",
        "train-head",
        "test-model",
        "eval-trials",
        "embed",
        "verify",
        "calibrate",
        "enroll",
        "list",
        "remove",
        "identify",
        "convert-checkpoint",
    ):
        with pytest.raises(SystemExit) as exited:
            main([command, "-h"])
        assert exited.value.code == 0 and "usage:" in capsys.readouterr().out, command


@pytest.mark.parametrize(
    "arguments,problem",
    [
        (["train-head", "--checkpoint_file", "base.keras", "--fusion", "bogus"], "unknown fusion 'bogus'"),
        (["train-head", "--checkpoint_file", "base.keras", "--head", "lstm"], "unknown head 'lstm'"),
        (["train-softmax", "--loss", "arcface"], "loss 'arcface' is not one of"),
        (["train-softmax", "--model", "lstm"], "unknown model 'lstm'"),
        (["train-softmax", "--epochs", "0"], "epochs must be >= 1"),
    ],
)
def test_enumerated_and_ranged_options_are_refused_before_work(tmp_path, capsys, arguments, problem):
    from deep_speaker.cli import main

    assert main([*arguments, "--working_dir", str(tmp_path / "wd")]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "wd").exists()


def test_corrupt_calibration_is_a_clear_error(tmp_path, capsys):
    checkpoint = save_tiny_model(tmp_path / "m.keras")
    (tmp_path / "m.keras.calibration.json").write_text("{broken")
    sample = ROOT / "samples" / "1255-90413-0001.flac"
    result = cli_in_process(capsys, "verify", sample, sample, "--checkpoint_file", checkpoint)
    assert result.returncode == 2 and "m.keras.calibration.json: not a readable calibration file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_recipe_option_is_a_clear_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rat: 0.1\n")
    result = cli_in_process(capsys, "train-softmax", "--working_dir", tmp_path, "--recipe", recipe)
    assert result.returncode == 2 and "unknown option(s) ['learning_rat']" in result.stderr


def test_training_without_cache_is_a_clear_error(tmp_path, capsys):
    result = cli_in_process(capsys, "train-softmax", "--working_dir", tmp_path / "empty")
    assert result.returncode == 2 and "run `build-features" in result.stderr and "Traceback" not in result.stderr


def test_boolean_recipe_flags_parse_false_as_false(capsys):
    from deep_speaker.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train-softmax", "--working_dir", "wd", "--spec_augment", "false"]).spec_augment is False
    assert parser.parse_args(["train-softmax", "--working_dir", "wd", "--spec_augment", "true"]).spec_augment is True
    result = cli_in_process(capsys, "train-softmax", "--working_dir", "wd", "--spec_augment", "maybe")
    assert result.returncode == 2 and "expected true or false, got 'maybe'" in result.stderr


def test_build_mfcc_log_energies_and_a_mismatched_model_is_refused(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=2)
    wd = tmp_path / "wd"
    built = cli_in_process(
        capsys,
        "build-mfcc",
        "--audio_dir",
        corpus,
        "--working_dir",
        wd,
        "--energies",
        "log",
        "--normalisation",
        "utterance",
        "--workers",
        "1",
    )
    assert built.returncode == 0, built.stderr
    assert '"energies": "log"' in (wd / "features.json").read_text()
    save_tiny_model(tmp_path / "linear.keras")
    tested = cli_in_process(capsys, "test-model", "--working_dir", wd, "--checkpoint_file", tmp_path / "linear.keras")
    assert tested.returncode == 2 and "the model takes linear filterbank energies" in tested.stderr and "Traceback" not in tested.stderr


def test_build_features_caches_what_a_recipe_asks_for(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("phase: triplet\nfeatures: {energies: log, normalisation: utterance}\n")
    built = cli_in_process(capsys, "build-features", "--audio-dir", corpus, "--working-dir", tmp_path / "wd", "--recipe", recipe)
    assert built.returncode == 0, built.stderr
    cached = json.loads((tmp_path / "wd" / "features.json").read_text())
    assert (cached["energies"], cached["normalisation"], cached["trim"]) == ("log", "utterance", "reference")
    flagged = cli_in_process(
        capsys, "build-features", "--audio-dir", corpus, "--working-dir", tmp_path / "wd2", "--recipe", recipe, "--normalisation", "frame"
    )
    assert flagged.returncode == 0 and json.loads((tmp_path / "wd2" / "features.json").read_text())["normalisation"] == "frame"
    head = tmp_path / "head.yaml"
    head.write_text("phase: head\n")
    refused = cli_in_process(capsys, "build-features", "--audio-dir", corpus, "--working-dir", tmp_path / "wd3", "--recipe", head)
    assert refused.returncode == 2 and "does not train on cached features" in refused.stderr


@pytest.mark.parametrize(
    "arguments,problem",
    [
        (["verify", "A", "B", "--threshold", "nan"], "a threshold must be a finite number"),
        (["verify", "A", "B", "--threshold", "inf"], "a threshold must be a finite number"),
        (["verify", "A", "B", "--threshold", "5"], "threshold 5.0 is outside the cosine score range -1 to 1"),
        (["verify", "A", "B", "--crop_frames", "0"], "crop_frames must be at least 16"),
        (["identify", "A", "--top-k", "0", "--threshold", "0.5"], "top_k must be a whole number of at least 1, got 0"),
        (["identify", "A", "--top-k", "-1", "--threshold", "0.5"], "top_k must be a whole number of at least 1, got -1"),
        (["embed", "A", "--out", "."], "--out names the .npy file to write"),
        (["enroll", "", "A"], "speaker name ''"),
        (["enroll", "tab\there", "A"], "speaker name 'tab\\there'"),
    ],
)
def test_bad_decision_options_are_one_line_errors(tmp_path, capsys, arguments, problem):
    checkpoint = save_tiny_model(tmp_path / "m.keras")
    sample = ROOT / "samples" / "1255-90413-0001.flac"
    (tmp_path / "s.db").unlink(missing_ok=True)
    with_store = ["--store", tmp_path / "s.db"] if arguments[0] in ("identify", "enroll") else []
    with_store += ["--runtime", "keras"]  # the tiny model is not exported: its one-time export would be a line of its own
    if arguments[0] == "identify":
        assert cli_in_process(capsys, "enroll", "ann", sample, "--checkpoint_file", checkpoint, *with_store).returncode == 0
    arguments = [sample if a in ("A", "B") else a for a in arguments]
    result = cli_in_process(capsys, *arguments, "--checkpoint_file", checkpoint, *with_store)
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_system_errors_are_one_line(tmp_path, capsys):
    checkpoint = save_tiny_model(tmp_path / "m.keras")
    sample = ROOT / "samples" / "1255-90413-0001.flac"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = cli_in_process(capsys, "embed", sample, "--checkpoint_file", checkpoint, "--out", blocked / "e.npy", "--runtime", "keras")
    assert result.returncode == 2 and result.stderr.startswith("error: [Errno") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "arguments,problem",
    [
        (["diarize", "a.wav", "--num-speakers", "1000"], "argument --num-speakers: must be between 1 and 100, got 1000"),
        (["diarize", "a.wav", "--threshold", "nan"], "argument --threshold: must be a number in [-1, 1], got nan"),
        (["diarize", "a.wav", "--threshold", "5"], "argument --threshold: must be a number in [-1, 1], got 5"),
        (["attack", "a.wav", "o.wav", "--target-file", "b.wav", "--snr", "-10"], "argument --snr: must be a number in [0, 120], got -10"),
        (
            ["fuse", "a.keras", "b.keras", "f.fusion.json", "--audio_dir", "d", "--weights", "inf", "1"],
            "argument --weights: must be a number in (0, 1e+06], got inf",
        ),
        (["test-model", "--working_dir", "wd", "--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
        (["make-spoofs", "--audio_dir", "d", "--out", "o", "--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
        (["serve", "--port", "70000"], "argument --port: must be between 0 and 65535, got 70000"),
        (
            ["augment-cache", "--working_dir", "wd", "--noise_probability", "2"],
            "argument --noise-probability: must be a number in [0, 1], got 2",  # typed --noise_probability: the alias
        ),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_parser(capsys, arguments, problem):
    result = cli_in_process(capsys, *arguments)
    assert result.returncode == 2 and problem in result.stderr and "Traceback" not in result.stderr


def test_no_command_writes_over_its_own_input(tmp_path, capsys):
    import soundfile as sf

    from tests.helpers import synthetic_speech

    recording = tmp_path / "original.wav"
    sf.write(recording, synthetic_speech(2.0), 16000)
    before = recording.read_bytes()
    link = tmp_path / "alias.wav"
    link.symlink_to(recording)
    for arguments in (
        ["attack", recording, recording, "--target-file", recording, "--threshold", "0.5"],
        ["attack", recording, link, "--target-file", recording, "--threshold", "0.5"],  # the same file by another name
        ["convert-voice", recording, tmp_path / "other.wav", recording],
        ["diarize", recording, "--rttm", recording],
    ):
        result = cli_in_process(capsys, *arguments)
        assert result.returncode == 2 and "is also this command's input" in result.stderr, arguments
    assert recording.read_bytes() == before
    checkpoint = save_tiny_model(tmp_path / "m.keras")
    stamp = checkpoint.read_bytes()
    for arguments in (["convert-checkpoint", checkpoint, checkpoint], ["ensemble", checkpoint, tmp_path / "x.keras", checkpoint]):
        result = cli_in_process(capsys, *arguments)
        assert result.returncode == 2 and "m.keras: is also this command's input" in result.stderr, arguments
    assert checkpoint.read_bytes() == stamp


@pytest.mark.slow
def test_calibrate_windows_for_diarization_and_its_refusals(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path / "home"))
    corpus = write_corpus(tmp_path / "corpus", speakers=8, utterances=6)
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    both = cli_in_process(capsys, "calibrate", "--trials", "t.txt", "--audio_root", ".", "--windows", "1.5", "--audio_dir", corpus)
    assert both.returncode == 2 and "calibrate takes a trial list (--trials T --audio-root R) or windows" in both.stderr
    done = cli_in_process(
        capsys, "calibrate", "--windows", "1.5", "--audio_dir", corpus, "--checkpoint_file", checkpoint, "--quiet", "--vad", "energy"
    )
    assert done.returncode == 0, done.stderr  # synthetic voices: the energy detector (Silero, rightly, finds little speech in them)
    assert "windows of 1.5 s from 48 recordings of 8 speakers" in done.stdout and "tiny.keras.1.5s.calibration.json" in done.stdout
    again = cli_in_process(
        capsys, "calibrate", "--windows", "1.5", "--audio_dir", corpus, "--checkpoint_file", checkpoint, "--quiet", "--vad", "energy"
    )
    assert (
        again.returncode == 2
        and "already has a calibration for cosine scores of 1.5 s windows" in again.stderr
        and "(pass --force" in again.stderr
    )


def test_bad_inputs_are_refused_before_any_model_loads(tmp_path):
    """A missing, empty or corrupt recording is named at once: the command stops before importing TensorFlow."""
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    good = ROOT / "samples" / "PhilippeRemy" / "PhilippeRemy_001.wav"
    cases = [
        (["verify", tmp_path / "missing.wav", good], "missing.wav: no such file"),
        (["verify", good, tmp_path / "empty.wav"], "empty.wav: empty file"),
        (["identify", tmp_path / "broken.wav", "--store", tmp_path / "s.db"], "no such speaker store"),
        (["embed", good, tmp_path / "broken.wav", "--out", tmp_path / "e.npy"], "broken.wav"),
        (["enroll", "ann", tmp_path / "missing.wav", "--store", tmp_path / "s.db"], "missing.wav: no such file"),
        (["diarize", tmp_path / "broken.wav"], "broken.wav"),
    ]
    script = (
        "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); "
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(code)"
    )
    for arguments, problem in cases:
        result = subprocess.run([sys.executable, "-c", script, *map(str, arguments)], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 2 and problem in result.stderr, (arguments, result.stderr)
        assert result.stdout.strip() == "no tensorflow", arguments
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "e.npy").exists()


@pytest.mark.slow
def test_a_command_that_loads_a_model_prints_no_tensorflow_banner(tmp_path):
    """TensorFlow's C++ libraries print oneDNN and CPU-feature lines as they load, before any log level applies: the
    command line imports it with them silenced, and its own output and errors still show."""
    import soundfile as sf

    from tests.helpers import synthetic_speech

    model = save_tiny_model(tmp_path / "tiny.keras")
    for name, pitch in (("a.wav", 120), ("b.wav", 200)):
        sf.write(tmp_path / name, synthetic_speech(2.0, pitch=pitch), 16000)
    result = subprocess.run(
        [sys.executable, "cli.py", "verify", tmp_path / "a.wav", tmp_path / "b.wav", "--checkpoint_file", model, "--threshold", "0.5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0 and "decision:" in result.stdout, result.stderr
    assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr and "cpu_feature_guard" not in result.stderr, (
        result.stderr
    )


def test_the_command_reference_is_generated_from_the_parser_and_current():
    from deep_speaker.cli import build_parser
    from deep_speaker.cli.reference import markdown

    reference = markdown()
    assert (ROOT / "docs" / "commands.md").read_text() == reference, "run: python -m deep_speaker.cli.reference > docs/commands.md"
    subcommands = next(a for a in build_parser()._actions if a.dest == "command")
    primary = {action.dest for action in subcommands._choices_actions}
    assert {line[5:-1] for line in reference.splitlines() if line.startswith("### `")} == primary  # every command, once
