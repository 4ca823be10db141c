"""Helpers shared by the benchmark scripts: locating ../shared, writing results, reference code paths."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def require_shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        sys.exit(f"benchmark needs the shared data at {SHARED_DATA}")
    return SHARED_DATA


def noise_sources(data: Path):
    """What the noise kinds of `deep_speaker.data.conversations` draw from in ../shared/data: babble talkers (every
    50th training recording, never a dev speaker), the recorded noises and the room responses."""
    from deep_speaker.audio import load_speech, read_audio
    from deep_speaker.data.conversations import NoiseSources
    from deep_speaker.data.corpus import discover_utterances

    return NoiseSources(
        talkers=[load_speech(u.path) for u in discover_utterances(data / "speechocean762" / "train")[::50]],
        recorded=[read_audio(p) for p in sorted((data / "noise").glob("*.flac"))],
        rooms=[read_audio(p) for p in sorted((data / "rir").glob("*.flac"))],
    )


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


def write_result(name: str, result: dict) -> Path:
    """Write benchmarks/results/<name>.json atomically and return its path."""
    from deep_speaker.fileio import atomic_write_bytes

    path = RESULTS / f"{name}.json"
    atomic_write_bytes(path, json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=2).encode())
    return path


def reference_read_audio(path, sample_rate: int = 16000) -> np.ndarray:
    """The reference's Audio.read: librosa.load, mono, float32."""
    import librosa

    audio, _ = librosa.load(path, sr=sample_rate, mono=True, dtype=np.float32)
    return audio


def reference_trim(audio: np.ndarray) -> np.ndarray:
    energy = np.abs(audio)
    offsets = np.where(energy > np.percentile(energy, 95))[0]
    return audio[offsets[0] : offsets[-1]]


def reference_mfcc_fbank(signal: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """The reference's mfcc_fbank: python_speech_features.fbank + per-frame normalisation loop."""
    from python_speech_features import fbank

    filter_banks, _ = fbank(signal, samplerate=sample_rate, nfilt=64)
    frames = [(v - np.mean(v)) / max(np.std(v), 1e-12) for v in filter_banks]
    return np.array(frames, dtype=np.float32)


def reference_read_mfcc(path) -> np.ndarray:
    return reference_mfcc_fbank(reference_trim(reference_read_audio(path)))


def dev_impostor_pairs(count: int, seed: int = 7) -> list[tuple[Path, Path, Path]]:
    """`count` deterministic (impostor recording, another of the impostor's, target speaker's recording) triples of
    different dev speakers."""
    dev = require_shared_data() / "speechocean762" / "dev"
    speakers = sorted(p for p in dev.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    pairs = []
    for index in rng.choice(len(speakers), size=count, replace=count > len(speakers)):
        impostor, target = speakers[index], speakers[(index + 1 + rng.integers(len(speakers) - 1)) % len(speakers)]
        impostor_files, target_files = sorted(impostor.glob("*.flac")), sorted(target.glob("*.flac"))
        pairs.append((impostor_files[0], impostor_files[1], target_files[0]))
    return pairs
