"""Augmented copies in the feature cache: each utterance augmented offline into N seeded copies (Kaldi-style).

Augmenting on the fly repeats the same work every step and, on a machine with few cores, takes them from the
model (`benchmarks/pipeline.py`); augmenting each utterance once costs a few milliseconds and training then
reads cached tensors. Layout beside the features of a working directory:
    augmented/<utterance_id>.<k>.npy   features of copy k (speed perturbed, then `augment.augment`)
    augmented.csv                      utterance_id,copy,speed,feature_path,num_frames
    augmented.json                     how the copies were made (a rerun with other settings is refused)
Files are written atomically; a killed run resumes with the copies still missing.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import load_speech
from ..errors import AudioError, CacheError
from ..features import FeatureConfig, compute_features
from ..fileio import atomic_save_npy, atomic_write_bytes, atomic_write_csv
from .augment import WaveformAugmentation, augment, read_clip_folder, speed_perturb
from .cache import cached_frames, read_feature_config, read_manifest, worker_pool

COPIES_DIR = "augmented"
COPIES_MANIFEST = "augmented.csv"
COPIES_CONFIG = "augmented.json"
COPIES_FIELDS = ("utterance_id", "copy", "speed", "feature_path", "num_frames")
BABBLE_TALKERS = 5


@lru_cache(maxsize=4)
def _clips(folder: str) -> tuple:
    """Noise or room clips of a folder, read once per worker process."""
    return tuple(read_clip_folder(folder))


def _augment_one(job) -> list[tuple[int, int | None, str | None]]:
    """All copies of one utterance: [(copy, frames or None, error or None)]."""
    audio_path, other_paths, targets, speeds, seed, augmentation, features, noise_dir, rir_dir = job
    try:
        speech = load_speech(audio_path, features.trim, features.sample_rate)
        others = [load_speech(p, features.trim, features.sample_rate) for p in other_paths]
    except AudioError as error:
        return [(k, None, str(error)) for k in targets]
    results = []
    for k, target in targets.items():  # only the missing copies; each has its own generator, so skipping is safe
        speed = speeds[k]
        rng = np.random.default_rng([*seed, k])
        copy = augment(speed_perturb(speech, speed), rng, augmentation, _clips(noise_dir), _clips(rir_dir), others)
        values = compute_features(copy, features)
        atomic_save_npy(target, values)
        results.append((k, values.shape[0], None))
    return results


def build_augmented_copies(
    working_dir,
    copies: int = 4,
    augmentation: WaveformAugmentation = WaveformAugmentation(),
    speeds=(1.0,),
    noise_dir: str = "",
    rir_dir: str = "",
    seed: int = 123,
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Make `copies` augmented copies of every cached utterance; copy k has speed `speeds[k % len(speeds)]`.

    Returns the number of copies computed in this run (finished ones are reused).
    """
    working_dir = Path(working_dir)
    if copies < 1:
        raise CacheError(f"copies must be at least 1, got {copies}")
    for name, folder in (("noise_dir", noise_dir), ("rir_dir", rir_dir)):
        if folder and not Path(folder).is_dir():
            raise CacheError(f"{name} {folder!r} is not a folder")
    entries = read_manifest(working_dir)
    features = read_feature_config(working_dir) or FeatureConfig()
    settings = {
        "copies": copies,
        "augmentation": asdict(augmentation),
        "speeds": list(speeds),
        "noise_dir": noise_dir,
        "rir_dir": rir_dir,
        "seed": seed,
    }
    config_path = working_dir / COPIES_CONFIG
    if config_path.is_file() and json.loads(config_path.read_text()) != json.loads(json.dumps(settings)):
        raise CacheError(
            f"{working_dir}: augmented copies were made with other settings ({config_path}); delete {COPIES_DIR}/ and {COPIES_CONFIG} first"
        )
    atomic_write_bytes(config_path, json.dumps(settings, indent=2).encode())
    speed_of = [speeds[k % len(speeds)] for k in range(copies)]
    targets = {e.utterance_id: [working_dir / COPIES_DIR / f"{e.utterance_id}.{k}.npy" for k in range(copies)] for e in entries}
    frames = {(e.utterance_id, k): cached_frames(t, features.num_fbanks) for e in entries for k, t in enumerate(targets[e.utterance_id])}
    jobs, ids = [], []
    for index, entry in enumerate(entries):
        missing = {k: t for k, t in enumerate(targets[entry.utterance_id]) if frames[entry.utterance_id, k] is None}
        if not missing:
            continue
        impostors = [e.audio_path for e in entries if e.speaker != entry.speaker]
        rng = np.random.default_rng([seed, index, 99])  # per utterance: a resumed run picks the same talkers
        chosen = [impostors[i] for i in rng.choice(len(impostors), min(BABBLE_TALKERS, len(impostors)), replace=False)] if impostors else []
        jobs.append((entry.audio_path, chosen, missing, speed_of, (seed, index), augmentation, features, noise_dir, rir_dir))
        ids.append(entry.utterance_id)
    computed = 0
    workers = workers or os.cpu_count() or 1
    if jobs:
        with worker_pool(workers) as pool:
            results = pool.map(_augment_one, jobs, chunksize=max(1, min(8, len(jobs) // (8 * workers))))
            for utterance_id, copy_results in tqdm(
                zip(ids, results), total=len(jobs), desc="augmented copies", disable=not progress, unit="utt"
            ):
                for k, num_frames, _ in copy_results:
                    frames[utterance_id, k] = num_frames
                    computed += num_frames is not None
    rows = [
        (e.utterance_id, k, speed_of[k], targets[e.utterance_id][k].relative_to(working_dir).as_posix(), frames[e.utterance_id, k])
        for e in entries
        for k in range(copies)
        if frames[e.utterance_id, k] is not None
    ]
    atomic_write_csv(working_dir / COPIES_MANIFEST, COPIES_FIELDS, rows)
    return computed


def read_augmented_copies(working_dir) -> list[dict]:
    """Rows of `augmented.csv` (utterance_id, copy, speed, feature_path as a Path, num_frames)."""
    path = Path(working_dir) / COPIES_MANIFEST
    if not path.is_file():
        raise CacheError(f"{working_dir}: no {COPIES_MANIFEST}: no augmented copies in this cache", cli_hint="run `augment-cache` first")
    with path.open(newline="") as handle:
        return [
            {**row, "speed": float(row["speed"]), "feature_path": Path(working_dir) / row["feature_path"]} for row in csv.DictReader(handle)
        ]
