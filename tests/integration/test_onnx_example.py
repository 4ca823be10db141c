"""The ONNX Runtime example of docs/deployment.md (`docs/examples/verify_onnx.py`), run where the toolkit is not
installed, gives the toolkit's scores and decisions with a standalone export of our shipped model."""

import json
import re

import pytest

from deep_speaker.embedding import DEFAULT_CHECKPOINT
from tests.helpers import ROOT, cli_in_process, link_requirements, run_isolated

SAMPLES = ROOT / "samples"
PAIRS = [
    (SAMPLES / "PhilippeRemy" / "PhilippeRemy_001.wav", SAMPLES / "PhilippeRemy" / "PhilippeRemy_002.wav"),
    (SAMPLES / "PhilippeRemy" / "PhilippeRemy_001.wav", SAMPLES / "1255-90413-0001.flac"),
]


@pytest.mark.slow
def test_the_documented_example_matches_the_toolkit_without_it(tmp_path, capsys):
    exported = cli_in_process(capsys, "export", DEFAULT_CHECKPOINT, tmp_path / "ecapa.onnx", "--format", "onnx", "--standalone")
    assert exported.returncode == 0, exported.stderr
    site = link_requirements(tmp_path / "site", ["numpy", "onnxruntime", "soundfile", "soxr"])
    example = ROOT / "docs" / "examples" / "verify_onnx.py"
    assert example.read_text() in (ROOT / "docs" / "deployment.md").read_text()  # the page shows exactly what runs here
    code = [line for line in example.read_text().splitlines()[1:] if line and not line.startswith(("import ", "from "))]
    assert len(code) <= 10  # ten lines of code, the imports aside
    assert run_isolated(site, ["-c", "import deep_speaker"], tmp_path).returncode != 0  # the toolkit is not there
    for first, second in PAIRS:
        ran = run_isolated(site, [example, tmp_path / "ecapa.onnx", first, second], tmp_path)
        assert ran.returncode == 0, ran.stderr
        score, threshold = map(float, re.search(r"score = (\S+)  threshold = (\S+)", ran.stdout).groups())
        toolkit = cli_in_process(capsys, "verify", first, second, "--checkpoint-file", DEFAULT_CHECKPOINT, "--json")
        decision = json.loads(toolkit.stdout)
        assert abs(score - decision["score"]) <= 1e-4 and threshold == pytest.approx(decision["threshold"], abs=1e-4)
        assert ("decision: same speaker" in ran.stdout) == decision["accepted"]
