"""Feature cache: features of every utterance of a corpus, computed once, in parallel, resumable.

Layout of a working directory:
    features/<utterance_id>.npy   float32 (frames, 64), one per utterance
    features.json                 the FeatureConfig used (a rerun with another config is refused)
    manifest.csv                  utterance_id,speaker,audio_path,feature_path,num_frames
    failures.csv                  utterance_id,audio_path,reason for files that could not be used

Every file is written to a temporary name and renamed, so a `.npy` that exists is complete: a run
killed at any point and started again recomputes only what is missing.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import AudioError, CacheError
from ..features import FeatureConfig, file_features
from ..fileio import atomic_save_npy, atomic_write_bytes, atomic_write_csv
from .corpus import Utterance, discover_utterances

FEATURES_DIR = "features"
MANIFEST = "manifest.csv"
FAILURES = "failures.csv"
CONFIG_FILE = "features.json"
MANIFEST_FIELDS = ("utterance_id", "speaker", "audio_path", "feature_path", "num_frames")


@dataclass
class CacheSummary:
    """What a `build_feature_cache` run did."""

    total: int
    computed: int
    reused: int
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.total} utterances: {self.computed} computed, {self.reused} already cached, {len(self.failures)} failed"]
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failures]
        return "\n".join(lines)


def featurise(job: tuple[Utterance, FeatureConfig]) -> tuple[np.ndarray | None, str | None]:
    """(features, None) of one utterance, or (None, reason) when its audio cannot be used (a worker's job)."""
    utterance, config = job
    try:
        return file_features(utterance.path, config), None
    except AudioError as error:
        return None, str(error)
    except MemoryError:
        return None, f"{utterance.path}: out of memory while decoding or featurising it"


def _compute_one(job: tuple[Utterance, Path, FeatureConfig]) -> tuple[str, int | None, str | None]:
    utterance, target, config = job
    features, error = featurise((utterance, config))
    if error is not None:
        return utterance.utterance_id, None, error
    atomic_save_npy(target, features)  # an OSError here (disk full) ends the run: nothing more could be written
    return utterance.utterance_id, features.shape[0], None


def cached_frames(path: Path, num_fbanks: int) -> int | None:
    """Frames of a complete cached feature file, or None if it is missing, truncated or not features."""
    try:
        features = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if features.ndim != 2 or features.shape[1] != num_fbanks or features.dtype != np.float32 or features.shape[0] < 1:
        return None
    return int(features.shape[0])


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that started it is gone (even after kill -9)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def read_feature_config(working_dir) -> FeatureConfig | None:
    """The FeatureConfig a working directory was built with (None before the first `build-features`)."""
    config_path = Path(working_dir) / CONFIG_FILE
    if not config_path.is_file():
        return None
    return FeatureConfig.from_dict(json.loads(config_path.read_text()))


def check_feature_config(working_dir: Path, config: FeatureConfig) -> None:
    """Record `config` as the working directory's features on first use; refuse another one afterwards."""
    stored = read_feature_config(working_dir)
    if stored is None:
        atomic_write_bytes(working_dir / CONFIG_FILE, json.dumps(asdict(config), indent=2).encode())
    elif stored != config:
        raise CacheError(
            f"{working_dir}: features were cached with {asdict(stored)}, this run asks for {asdict(config)}; "
            "use another working directory or delete that one"
        )


def build_feature_cache(
    source,
    working_dir,
    config: FeatureConfig = FeatureConfig(),
    workers: int | None = None,
    progress: bool = True,
) -> CacheSummary:
    """Compute features for every utterance of `source` into `working_dir` (see module docstring)."""
    working_dir = Path(working_dir)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise CacheError(f"workers must be a whole number of at least 1, got {workers!r}")
    utterances = discover_utterances(source)
    working_dir.mkdir(parents=True, exist_ok=True)
    check_feature_config(working_dir, config)
    features_dir = working_dir / FEATURES_DIR
    for leftover in features_dir.rglob("*.tmp") if features_dir.exists() else ():
        leftover.unlink()

    targets = {u.utterance_id: features_dir / f"{u.utterance_id}.npy" for u in utterances}
    frames: dict[str, int] = {}
    for utterance in utterances:
        cached = cached_frames(targets[utterance.utterance_id], config.num_fbanks)
        if cached is not None:
            frames[utterance.utterance_id] = cached
    todo = [(u, targets[u.utterance_id], config) for u in utterances if u.utterance_id not in frames]
    errors: dict[str, str] = {}
    workers = workers or os.cpu_count() or 1
    if todo:
        with worker_pool(workers) as pool:
            results = pool.map(_compute_one, todo, chunksize=max(1, min(16, len(todo) // (8 * workers))))
            for utterance_id, num_frames, error in tqdm(results, total=len(todo), desc="features", disable=not progress, unit="utt"):
                if error is None:
                    frames[utterance_id] = num_frames
                else:
                    errors[utterance_id] = error

    rows = []
    for utterance in utterances:
        if utterance.utterance_id in errors:
            continue
        target = targets[utterance.utterance_id]
        num_frames = frames[utterance.utterance_id]
        rows.append(
            (utterance.utterance_id, utterance.speaker, str(utterance.path), target.relative_to(working_dir).as_posix(), num_frames)
        )
    atomic_write_csv(working_dir / MANIFEST, MANIFEST_FIELDS, rows)
    by_id = {u.utterance_id: u for u in utterances}
    failures = [(str(by_id[i].path), reason) for i, reason in sorted(errors.items())]
    atomic_write_csv(working_dir / FAILURES, ("audio_path", "reason"), failures)
    return CacheSummary(len(utterances), len(todo) - len(errors), len(utterances) - len(todo), failures)


class _InProcess:
    """The pool interface, run in this process: one worker needs no second interpreter."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items, chunksize: int = 1):
        return map(function, items)


def worker_pool(workers: int):
    """Processes for per-file work (spawned, exiting with their parent), or this process for one worker."""
    if workers == 1:
        return _InProcess()
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
    )


@dataclass(frozen=True)
class CachedUtterance:
    utterance_id: str
    speaker: str
    feature_path: Path
    num_frames: int
    audio_path: Path


def read_manifest(working_dir) -> list[CachedUtterance]:
    """Cached utterances of a working directory built by `build_feature_cache`."""
    working_dir = Path(working_dir)
    manifest = working_dir / MANIFEST
    if not manifest.is_file():
        raise CacheError(
            f"{working_dir}: no {MANIFEST}: not a feature cache (build it with build_feature_cache)",
            cli_hint=f"run `build-features --audio-dir DIR --working-dir {working_dir}` first",
        )
    with manifest.open(newline="") as handle:
        return [
            CachedUtterance(
                row["utterance_id"], row["speaker"], working_dir / row["feature_path"], int(row["num_frames"]), Path(row["audio_path"])
            )
            for row in csv.DictReader(handle)
        ]
