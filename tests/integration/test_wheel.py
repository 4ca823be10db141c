"""A non-editable install (a wheel) carries the default model and its calibration: it works outside the tree."""

import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_wheel_installed_outside_the_tree_verifies_the_samples(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the working tree
    shutil.copytree(ROOT / "deep_speaker", source / "deep_speaker", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("deep_speaker-*.whl"))
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    homes = [f"models/{home.name}/{file.name}" for home in (ROOT / "deep_speaker/pretrained/models").iterdir() for file in home.iterdir()]
    for shipped in ("deep_speaker.keras", "ge2e_resemblyzer.keras", "default.fusion.json", "LICENSE.resemblyzer", "README.md", *homes):
        assert (target / "deep_speaker" / "pretrained" / shipped).is_file(), shipped
    assert len(homes) == 11  # the shipped models' calibrations and back ends
    samples = ROOT / "samples"
    environment = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "DEEP_SPEAKER_HOME": str(tmp_path / "home")}
    script = (
        "import deep_speaker, sys; assert deep_speaker.__file__.startswith(sys.argv[1]), deep_speaker.__file__; "
        "from deep_speaker.cli import main; sys.exit(main(['verify', sys.argv[2], sys.argv[3]]))"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(target),
            str(samples / "PhilippeRemy" / "PhilippeRemy_001.wav"),
            str(samples / "PhilippeRemy" / "PhilippeRemy_002.wav"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert "(operating point far1)  decision: same speaker" in result.stdout  # the shipped default system, calibrated
