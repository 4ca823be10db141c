"""Shared test fixtures: synthetic audio, tiny models, and access to ../shared (skipped locally if absent,
a failure under CI=true, where it must be present)."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LEGACY = SHARED / "fixtures" / "deep_speaker_legacy"
DATA = SHARED / "data"


def require_shared(path: Path = SHARED) -> Path:
    """Return `path` inside ../shared, or skip (locally) / fail (CI=true) when it is missing."""
    if not path.exists():
        message = f"{path} is missing: these tests need the shared data beside the repository (../shared)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    return require_shared(DATA)


@pytest.fixture
def legacy_fixtures() -> Path:
    return require_shared(LEGACY)


def synthetic_speech(seconds: float = 1.5, sample_rate: int = 16000, pitch: float = 120.0, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal with silence around it: enough like speech for the pipeline."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    harmonics = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    voiced = 0.3 * harmonics * envelope + 0.01 * rng.standard_normal(t.size)
    silence = np.zeros(sample_rate // 4)
    return np.concatenate([silence, voiced, silence]).astype(np.float32)


@pytest.fixture
def speech_file(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    sf.write(path, synthetic_speech(), 16000)
    return path


def write_corpus(root: Path, speakers: int = 3, utterances: int = 2, suffix: str = ".flac") -> Path:
    """A one-folder-per-speaker corpus of synthetic speech, a different pitch per speaker."""
    for s in range(speakers):
        for u in range(utterances):
            folder = root / f"spk{s}"
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"utt{u}{suffix}", synthetic_speech(1.0 + 0.1 * u, pitch=100 + 40 * s, seed=u), 16000)
    return root
