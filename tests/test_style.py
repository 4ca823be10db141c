"""The code is formatted and linted as pyproject.toml configures ruff; CI runs both through this test."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff_finds_nothing_to_change(command):
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"ruff {' '.join(command)}: run `ruff format . && ruff check --fix .`\n{result.stdout}{result.stderr}"
