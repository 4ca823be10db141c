"""The wheel, installed where nothing else is: `pip install deep-speaker` (no extras) verifies the samples without
TensorFlow, each extra runs its command on tiny input, a missing extra is named in one line, and twine accepts it.

No network: the wheel is installed with --no-deps into a folder, and every distribution its metadata requires (for
the extras asked for, recursively) is linked there from this environment. A base interpreter started with -S sees
that folder and the standard library only, so a dependency the metadata forgets fails the test."""

import importlib.metadata
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from tests.helpers import (
    BASE_INTERPRETER,
    ROOT,
    isolated_environment,
    link_requirements,
    requirements_of,
    run_isolated,
    save_tiny_model,
    synthetic_speech,
    write_corpus,
)

pytestmark = pytest.mark.slow

SAMPLES = [ROOT / "samples" / "PhilippeRemy" / f"PhilippeRemy_00{k}.wav" for k in (1, 2)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build leaves nothing in the working tree
    shutil.copytree(ROOT / "deep_speaker", source / "deep_speaker", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return next((root / "dist").glob("deep_speaker-*.whl"))


def _install_wheel(wheel: Path, site: Path):
    """The wheel alone installed in `site`; its distribution (metadata)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return next(importlib.metadata.distributions(path=[str(site)]))


def install_without_network(wheel: Path, site: Path, extras=()) -> Path:
    """`site`: the wheel and, linked from this environment, every distribution it requires with `extras`."""
    own = _install_wheel(wheel, site)
    return link_requirements(site, requirements_of(own, extras), own)


def run_installed(site: Path, tmp_path: Path, *arguments, environment=None, timeout=600) -> subprocess.CompletedProcess:
    """`deep-speaker ARGUMENTS` where only `site` is visible (`run_isolated`); it also prints which heavy modules the
    command imported."""
    script = (
        "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); "
        "print('imported:', sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)); sys.exit(code)"
    )
    return run_isolated(site, ["-c", script, *arguments], tmp_path, environment, timeout)


def test_the_wheel_without_extras_verifies_the_samples_without_tensorflow(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site")
    shipped = site / "deep_speaker" / "pretrained"
    homes = [f"models/{home.name}/{file.name}" for home in (ROOT / "deep_speaker/pretrained/models").iterdir() for file in home.iterdir()]
    models = ("deep_speaker", "ge2e_resemblyzer", "overlap_detector")
    for name in (*(f"{m}.{kind}" for m in models for kind in ("keras", "onnx")), "default.fusion.json", "LICENSE.resemblyzer", *homes):
        assert (shipped / name).is_file(), name
    assert len(homes) == 11  # the shipped models' calibrations and back ends
    assert not (site / "tensorflow").exists() and not (site / "keras").exists()
    result = run_installed(site, tmp_path, "verify", *SAMPLES)
    assert result.returncode == 0, result.stderr
    assert (
        "(operating point far1, calibrated on dev_trials.txt)  decision: same speaker" in result.stdout
    )  # the shipped default system, calibrated
    assert "imported: []" in result.stdout and "exporting" not in result.stderr  # the shipped ONNX copies, as they are
    assert run_installed(site, tmp_path, "diarize", SAMPLES[0]).returncode == 0
    keras = run_installed(site, tmp_path, "verify", *SAMPLES, "--runtime", "keras")
    assert keras.returncode == 2 and keras.stderr.count("\n") == 1, keras.stderr
    assert "this needs keras, which is not installed: pip install 'deep-speaker[train]'" in keras.stderr


def test_twine_accepts_the_wheel(wheel):
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel)], capture_output=True, text=True)
    assert checked.returncode == 0 and "PASSED" in checked.stdout, checked.stdout + checked.stderr


def test_the_train_extra_trains(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["train"])
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=5)
    assert run_installed(site, tmp_path, "build-features", "--audio-dir", corpus, "--working-dir", "wd").returncode == 0
    flags = [
        "--epochs",
        "1",
        "--width",
        "0.03125",
        "--embedding-dim",
        "8",
        "--batch-size",
        "6",
        "--num-frames",
        "40",
        "--validation-fraction",
        "0.4",
    ]
    trained = run_installed(site, tmp_path, "train-softmax", "--working-dir", "wd", *flags, "--steps-per-epoch", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "wd" / "softmax" / "best.keras").is_file() and "'tensorflow'" in trained.stdout


def test_the_export_extra_exports(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["export"])
    model = save_tiny_model(tmp_path / "tiny.keras")
    exported = run_installed(site, tmp_path, "export", model, tmp_path / "tiny.onnx", "--format", "onnx")
    assert exported.returncode == 0 and "parity with Keras" in exported.stdout, exported.stderr


def test_the_serve_extra_serves(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["serve"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = "import sys; from deep_speaker.cli import main; sys.exit(main(sys.argv[1:]))"
    server = subprocess.Popen(
        [BASE_INTERPRETER, "-S", "-c", script, "serve", "--port", str(port), "--store", str(tmp_path / "s.db")],
        cwd=tmp_path,
        env=isolated_environment(site, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, health = time.time() + 120, None
        while health is None and time.time() < deadline and server.poll() is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert health is not None and '"embedding_dim"' in health, server.stderr.read() if server.poll() is not None else "no answer"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_adversarial_extra_converts_a_voice(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["adversarial"])
    for name, pitch in (("a", 100), ("b", 200)):
        sf.write(tmp_path / f"{name}.wav", synthetic_speech(1.5, pitch=pitch), 16000)
    converted = run_installed(site, tmp_path, "convert-voice", "a.wav", "b.wav", "out.wav", "--method", "world")
    assert converted.returncode == 0 and sf.info(str(tmp_path / "out.wav")).frames == synthetic_speech(1.5).size, converted.stderr


def test_the_cluster_extra_embeds_a_corpus_on_ray(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["cluster"])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for sample in SAMPLES:
        shutil.copy(sample, corpus / sample.name)
    embedded = run_installed(
        site, tmp_path, "embed-corpus", corpus, "--out-dir", "out", "--quiet", environment={"RAY_USAGE_STATS_ENABLED": "0"}
    )
    assert embedded.returncode == 0 and (tmp_path / "out" / "manifest.json").is_file(), embedded.stderr
    assert "imported: []" in embedded.stdout


def test_the_postgresql_extra_enrols_into_a_shared_database(wheel, tmp_path, postgres_url):
    site = install_without_network(wheel, tmp_path / "site", ["postgresql"])
    enrolled = run_installed(site, tmp_path, "enroll", "philippe", SAMPLES[0], "--store", postgres_url)
    assert enrolled.returncode == 0 and "imported: []" in enrolled.stdout, enrolled.stderr
    listed = run_installed(site, tmp_path, "list", "--store", postgres_url)
    assert listed.returncode == 0 and "philippe\t1 file(s)" in listed.stdout, listed.stderr


def test_the_jax_extra_runs_keras_models_without_tensorflow(wheel, tmp_path):
    site = install_without_network(wheel, tmp_path / "site", ["jax"])
    verified = run_installed(site, tmp_path, "verify", *SAMPLES, "--runtime", "keras", environment={"KERAS_BACKEND": "jax"})
    assert verified.returncode == 0 and "decision: same speaker" in verified.stdout, verified.stderr
    assert "imported: ['jax', 'keras']" in verified.stdout


def test_the_gpu_extra_asks_for_tensorflow_with_cuda(wheel, tmp_path):
    """Read, not run: a run needs a GPU and CUDA's wheels, which CI has neither of."""
    own = _install_wheel(wheel, tmp_path / "site")
    base = {str(r) for r in requirements_of(own)}
    gpu = {str(r).split(";")[0].strip() for r in requirements_of(own, ["gpu"])} - {str(r).split(";")[0].strip() for r in base}
    assert any(r.startswith("tensorflow[and-cuda]") for r in gpu) and "deep-speaker[train]" in gpu
    assert not any(r.startswith("tensorflow") for r in base)  # nothing pins the CPU build on a GPU user
