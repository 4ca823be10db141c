"""The cached features of a working directory in memory, with speaker labels and a per-speaker split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..features import FeatureConfig, crop_or_pad
from ..fileio import atomic_write_bytes
from .cache import read_feature_config, read_manifest

SPLIT_FILE = "split.json"


def held_out_count(utterances: int, validation_fraction: float) -> int:
    """How many of a speaker's utterances (its last ones) are held out for validation: the fraction, rounded;
    none of a speaker with a single utterance."""
    return int(round(utterances * validation_fraction)) if utterances > 1 else 0


class SpeakerFeatures:
    """All cached features of a working directory, with speaker labels and a train/validation split.

    The split (per speaker, the last `validation_fraction` of its utterances held out) is stored in
    `split.json` the first time, so every phase and `test-model` use the same held-out utterances.
    """

    def __init__(self, working_dir, validation_fraction: float = 0.2, augmented_copies: bool = False):
        """With `augmented_copies`, the cache's augmented copies of the *training* utterances join the training
        set (a copy at another speed as a speaker of its own: label + speed index x speakers)."""
        self.working_dir = Path(working_dir)
        entries = read_manifest(self.working_dir)
        self.feature_config = read_feature_config(self.working_dir) or FeatureConfig()
        self.utterance_ids = [e.utterance_id for e in entries]
        self.speakers = sorted({e.speaker for e in entries})
        speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([speaker_index[e.speaker] for e in entries])
        self.features = [np.load(e.feature_path) for e in entries]
        self.sources = np.arange(len(entries))  # the cached utterance each example comes from (copies: their original)
        self.train, self.validation = self._split(validation_fraction)
        self.num_classes = len(self.speakers)
        if augmented_copies:
            self._add_copies()

    def _add_copies(self) -> None:
        from .copies import read_augmented_copies

        index_of = {u: i for i, u in enumerate(self.utterance_ids)}
        training = set(self.train.tolist())
        rows = [r for r in read_augmented_copies(self.working_dir) if index_of.get(r["utterance_id"]) in training]
        speeds = sorted({r["speed"] for r in rows}, key=lambda speed: (speed != 1.0, speed))  # 1.0 first: own labels
        added = []
        for row in rows:
            source = index_of[row["utterance_id"]]
            self.features.append(np.load(row["feature_path"]))
            self.labels = np.append(self.labels, self.labels[source] + speeds.index(row["speed"]) * len(self.speakers))
            self.sources = np.append(self.sources, source)
            self.utterance_ids.append(f"{row['utterance_id']}#{row['copy']}")
            added.append(len(self.features) - 1)
        self.train = np.concatenate([self.train, np.array(added, dtype=int)])
        self.num_classes = len(self.speakers) * max(1, len(speeds))

    def _split(self, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        split_path = self.working_dir / SPLIT_FILE
        if split_path.is_file():
            held_out = set(json.loads(split_path.read_text())["validation"])
        else:
            held_out = set()
            for label in range(len(self.speakers)):
                members = [self.utterance_ids[i] for i in np.flatnonzero(self.labels == label)]
                held_out.update(members[len(members) - held_out_count(len(members), validation_fraction) :])
            atomic_write_bytes(split_path, json.dumps({"validation": sorted(held_out)}, indent=1).encode())
        is_validation = np.array([u in held_out for u in self.utterance_ids])
        return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)

    def crops(self, indices, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
        """(len(indices), num_frames, bands) crops; random positions if `rng`, else the first frames."""
        return np.stack([crop_or_pad(self.features[i], num_frames, rng) for i in indices])


class SpeakerWaveforms:
    """The trimmed waveforms of a working directory's utterances, in memory, beside its features (same order
    and split): what on-the-fly waveform augmentation crops from."""

    def __init__(self, data: SpeakerFeatures, progress: bool = True):
        from tqdm import tqdm

        from ..audio import load_speech

        config = data.feature_config
        entries = read_manifest(data.working_dir)
        self.waveforms = [
            load_speech(e.audio_path, config.trim, config.sample_rate) for e in tqdm(entries, desc="waveforms", disable=not progress)
        ]
