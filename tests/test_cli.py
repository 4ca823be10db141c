import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def test_every_subcommand_has_help():
    for command in ("build-mfcc-cache", "train-softmax", "train-triplet", "train-head", "test-model", "eval-trials",
                    "embed", "verify", "calibrate", "enroll", "list", "remove", "identify", "convert-checkpoint"):
        result = _run(sys.executable, "cli.py", command, "-h")
        assert result.returncode == 0 and "usage:" in result.stdout, command


def test_unknown_recipe_option_is_a_clear_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rat: 0.1\n")
    result = _run(sys.executable, "cli.py", "train-softmax", "--working_dir", tmp_path, "--recipe", recipe)
    assert result.returncode == 2 and "unknown option(s) ['learning_rat']" in result.stderr


def test_training_without_cache_is_a_clear_error(tmp_path):
    result = _run(sys.executable, "cli.py", "train-softmax", "--working_dir", tmp_path / "empty")
    assert result.returncode == 2 and "run `build-mfcc" in result.stderr and "Traceback" not in result.stderr
