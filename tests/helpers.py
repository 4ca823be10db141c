"""Helpers for the tests: synthetic speech and corpora, tiny speaker models, an encoder stand-in."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def synthetic_speech(seconds: float = 1.5, sample_rate: int = 16000, pitch: float = 120.0, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal with silence around it: enough like speech for the pipeline."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    harmonics = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    voiced = 0.3 * harmonics * envelope + 0.01 * rng.standard_normal(t.size)
    silence = np.zeros(sample_rate // 4)
    return np.concatenate([silence, voiced, silence]).astype(np.float32)


def write_corpus(root: Path, speakers: int = 3, utterances: int = 2, suffix: str = ".flac") -> Path:
    """A one-folder-per-speaker corpus of synthetic speech, a different pitch per speaker."""
    for s in range(speakers):
        for u in range(utterances):
            folder = root / f"spk{s}"
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"utt{u}{suffix}", synthetic_speech(1.0 + 0.1 * u, pitch=100 + 40 * s, seed=u), 16000)
    return root


def tiny_model(width: float = 0.0625, embedding_dim: int = 16, features=None, backbone: str | None = None, **backbone_options):
    """A small untrained speaker model (waveform in): the fast test backbone unless `backbone` names another."""
    from deep_speaker.features import FeatureConfig
    from deep_speaker.models import build_backbone, build_speaker_model

    features = features or FeatureConfig()
    backbone = backbone or register_fast_backbone()
    backbone = build_backbone(backbone, features.num_fbanks, width=width, embedding_dim=embedding_dim, **backbone_options)
    return build_speaker_model(backbone, features)


def save_tiny_model(path: Path, **options) -> Path:
    from deep_speaker.checkpoints import save_model

    save_model(tiny_model(**options), path)
    return path


class LookupEncoder:
    """Encoder stand-in: a file 'name_k' embeds to a fixed unit vector of speaker `name` plus small noise k."""

    embedding_dim = 4
    checkpoint = None
    directions = {"alice": [1, 0, 0, 0], "bob": [0, 1, 0, 0], "carol": [0, 0, 1, 0], "stranger": [0, 0, 0, 1]}

    def __init__(self, fingerprint: str = "model-a"):
        self.fingerprint = fingerprint

    def embed(self, path):  # a path or a decoded `Recording` of one
        from deep_speaker.audio import name_of

        name, k = Path(name_of(path)).stem.split("_")
        vector = np.array(self.directions[name], np.float32) + 0.05 * int(k)
        return vector / np.linalg.norm(vector)

    def embed_many(self, paths, progress: bool = False):
        return np.stack([self.embed(p) for p in paths])


def run_cli(*args, **kwargs):
    """`python cli.py ARGS` from the repository root, output captured as text."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kwargs)


TINY_RUN = dict(width=0.0625, embedding_dim=32, batch_size=12, num_frames=40, steps_per_epoch=2, validation_fraction=0.4)
FAST_BACKBONE = "frame_dense"  # a two-layer backbone that traces in a second, for tests of the driver itself


def register_fast_backbone() -> str:
    """Register `FAST_BACKBONE` (features -> Dense `frames` -> mean -> Dense `affine`) once."""
    import keras

    from deep_speaker.layers import TemporalAverage
    from deep_speaker.models import BACKBONES, register_backbone

    if FAST_BACKBONE not in BACKBONES:

        @register_backbone(FAST_BACKBONE)
        def build(num_fbanks=64, width=1.0, embedding_dim=32, dropout=0.0, name="backbone"):
            features = keras.Input((None, num_fbanks), name="features")
            frames = keras.layers.Dense(max(1, int(256 * width)), activation="relu", name="frames")(features)
            pooled = TemporalAverage(name="average")(frames)
            if dropout:
                pooled = keras.layers.Dropout(dropout, name="dropout")(pooled)
            return keras.Model(
                features, {"frames": frames, "embedding": keras.layers.Dense(embedding_dim, name="affine")(pooled)}, name=name
            )

    return FAST_BACKBONE


def tiny_recipe(phase: str = "classification", **options):
    """A recipe of `phase` small enough to train in seconds (the fast backbone unless `model` is given)."""
    from deep_speaker.config import load_recipe

    base = dict(TINY_RUN) if phase != "head" else {k: v for k, v in TINY_RUN.items() if k != "width"}
    if phase != "head":
        base["model"] = register_fast_backbone()
    return load_recipe(phase, **{**base, **options})


def feature_cache(root: Path, speakers: int = 4, utterances: int = 5, features=None) -> Path:
    """A working directory with the features of a synthetic corpus."""
    from deep_speaker.data.cache import build_feature_cache
    from deep_speaker.features import FeatureConfig

    corpus = root / "corpus"
    if not corpus.exists():
        write_corpus(corpus, speakers=speakers, utterances=utterances)
    build_feature_cache(corpus, root / "wd", features or FeatureConfig(), workers=1, progress=False)
    return root / "wd"


def cli_in_process(capsys, *args):
    """The command line run in this process (no interpreter start-up), with `run_cli`'s result attributes."""
    from types import SimpleNamespace

    from deep_speaker.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exited:  # argparse refusing an argument
        code = exited.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def noise(kind: str, seconds: float = 3.0, level: float = 0.5, seed: int = 0) -> np.ndarray:
    """Non-speech test signals: white, pink or brown noise, mains hum, or 1-bit dither, float32 at 16 kHz."""
    from deep_speaker.data.augment import coloured_noise

    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    if kind == "dither":
        return (rng.integers(-1, 2, n) / 32768.0).astype(np.float32)
    if kind == "hum":
        t = np.arange(n) / 16000
        signal = np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t)
    else:
        signal = coloured_noise(kind, n, rng)
    return (level * signal / np.abs(signal).max()).astype(np.float32)


def torchaudio_resample(
    signal: np.ndarray, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """torchaudio.functional.resample (sinc_interp_hann, its defaults) in NumPy: how SpeechBrain's fixture
    outputs were made from 48 kHz files; the toolkit itself resamples with soxr."""
    import math

    divisor = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // divisor, new_freq // divisor
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    times = (np.arange(0, -new, -1)[:, None] / new + np.arange(-width, width + orig)[None, :] / orig) * base
    times = np.clip(times, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(times * np.pi / lowpass_filter_width / 2) ** 2
    kernels = np.sinc(times) * window * base / orig  # sin(pi t) / (pi t)
    padded = np.pad(np.asarray(signal, np.float64), (width, width + orig))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig]
    return (frames @ kernels.T).reshape(-1)[: math.ceil(new * len(signal) / orig)].astype(np.float32)


class SpectrumEncoder:
    """Stand-in encoder: the unit-normalised coarse spectrum below 1 kHz, which tells synthetic voices apart by pitch."""

    fingerprint, checkpoint = "spectrum", None

    def embed_waveforms(self, waveforms, sample_rate=16000):
        vectors = []
        for wave in waveforms:
            spectrum = np.abs(np.fft.rfft(wave, 16000))[:1000]
            vector = spectrum.reshape(50, 20).sum(axis=1)
            vectors.append(vector / np.linalg.norm(vector))
        return np.array(vectors, np.float32)


def pitch_conversation(turns, pause=0.5):
    """Synthetic speakers (by pitch) taking turns with pauses; returns the waveform and the reference turns
    (where each voice actually sounds)."""
    from deep_speaker.diarization import Segment

    pieces, reference, time = [], [], 0.0
    for index, (pitch, seconds) in enumerate(turns):
        voice = synthetic_speech(seconds, pitch=pitch, seed=index)
        sounding = np.flatnonzero(np.abs(voice) > 1e-3)
        reference.append(Segment(time + sounding[0] / 16000, time + sounding[-1] / 16000, f"pitch{pitch}"))
        pieces += [voice, np.zeros(int(pause * 16000), np.float32)]
        time += (len(voice) + int(pause * 16000)) / 16000
    return np.concatenate(pieces), reference


def chromium() -> str:
    """The system's Chromium; skipped where it is not installed, except under CI, where that is a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); the browser tests need a real browser"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


BASE_INTERPRETER = getattr(sys, "_base_executable", sys.executable)  # no virtual environment's packages
ALIASES = {"tensorflow": "tensorflow-cpu"}  # this environment holds TensorFlow's CPU build under its own name


def requirements_of(distribution, extras=()) -> list:
    """What an installed `distribution` requires with `extras` (markers evaluated here)."""
    from packaging.requirements import Requirement

    wanted = []
    for line in distribution.requires or []:
        requirement = Requirement(line)
        contexts = [{"extra": extra} for extra in ("", *extras)]
        if requirement.marker is None or any(requirement.marker.evaluate(context) for context in contexts):
            wanted.append(requirement)
    return wanted


def link_requirements(site: Path, requirements, own=None) -> Path:
    """Link into `site`, from this environment, every distribution `requirements` name and, recursively, all they
    require: a folder where a base interpreter (`run_isolated`) sees those and nothing else, without any network.
    A requirement of `own` (an installed distribution, with its extras) expands to its own requirements."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    site.mkdir(parents=True, exist_ok=True)
    own_name = canonicalize_name(own.metadata["Name"]) if own is not None else None
    queue, seen = [Requirement(r) if isinstance(r, str) else r for r in requirements], set()
    while queue:
        requirement = queue.pop()
        name, extras = canonicalize_name(requirement.name), tuple(sorted(requirement.extras))
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name == own_name:
            queue += requirements_of(own, extras)
            continue
        try:
            found = importlib.metadata.distribution(ALIASES.get(name, name))
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{requirement} is required but not installed in this environment")
        for top in {Path(file).parts[0] for file in found.files or []} - {".."}:  # ".." holds console scripts
            if not (site / top).exists():
                (site / top).symlink_to(Path(found.locate_file(top)).resolve())
        queue += requirements_of(found, requirement.extras)
    return site


def isolated_environment(site: Path, cwd: Path) -> dict:
    """The environment variables of a process that sees `site` only, its homes under `cwd`."""
    return {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "DEEP_SPEAKER_HOME": str(cwd / "home"), "HOME": str(cwd)}


def run_isolated(site: Path, arguments, cwd: Path, environment=None, timeout=600) -> subprocess.CompletedProcess:
    """`python ARGUMENTS` by the base interpreter started with -S: it sees `site` and the standard library only."""
    return subprocess.run(
        [BASE_INTERPRETER, "-S", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**isolated_environment(site, cwd), **(environment or {})},
        timeout=timeout,
    )


class PostgresServer:
    """A PostgreSQL server process on a temporary data directory and a loopback port (`start_postgres`)."""

    def __init__(self, process: subprocess.Popen, url: str, folder: Path):
        self.process, self.url, self.folder = process, url, folder

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb and start PostgreSQL with pgvector from the `pgserver` wheel's binaries in a new temporary folder (one
    `nobody` can enter when the tests run as root); wait until it answers."""
    import importlib.util
    import socket
    import tempfile
    import time

    spec = importlib.util.find_spec("pgserver")
    if spec is None:
        message = "pgserver (PostgreSQL with pgvector) is not installed: pip install -r requirements.txt"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    binaries = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="deep-speaker-postgres-"))
    if as_user:
        shutil.chown(folder, "nobody")
    data = folder / "data"
    created = subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off"]
    process = subprocess.Popen([*as_user, *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"postgresql://postgres@127.0.0.1:{port}"
    import psycopg

    deadline = time.time() + 60
    while True:
        try:
            psycopg.connect(f"{url}/postgres", connect_timeout=2).close()
            return PostgresServer(process, url, folder)
        except psycopg.OperationalError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"PostgreSQL did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.2)
