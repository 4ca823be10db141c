"""Genuine and spoofed recordings for the detector: a speaker-disjoint split, balanced crops, fixed validation crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio import crop_waveform, load_speech
from ..errors import DeepSpeakerError
from .seeded import SeededBatches


def validation_speakers(rows, validation_fraction: float, seed: int) -> set[str]:
    """The speakers whose recordings and spoofs are held out for validation (and testing)."""
    speakers = sorted({speaker for _, speaker, _ in rows})
    rng = np.random.default_rng(seed)
    return set(rng.choice(speakers, size=max(1, round(validation_fraction * len(speakers))), replace=False))


class SpoofClips:
    """Trimmed waveforms (label 1: spoof) of a spoof manifest's rows, split by speaker: the validation speakers'
    recordings and spoofs never train. `held_out` families are left out of training and validation alike (they are
    what leave-one-family-out testing measures). Genuine recordings are sampled to the number of spoofs."""

    def __init__(self, rows, trim: str, validation_fraction: float = 0.2, held_out=(), seed: int = 123):
        validation = validation_speakers(rows, validation_fraction, seed)
        rng = np.random.default_rng([seed, 1])
        spoofs = [row for row in rows if row[2] != "genuine" and row[2] not in held_out]
        genuine = [row for row in rows if row[2] == "genuine"]
        if not spoofs or not genuine:
            raise DeepSpeakerError("the detector needs genuine recordings and spoofs of at least one family in training")
        genuine = [genuine[i] for i in sorted(rng.choice(len(genuine), size=min(len(genuine), len(spoofs)), replace=False))]
        self.waveforms, self.labels, self.families, is_validation = [], [], [], []
        for path, speaker, family in genuine + spoofs:
            self.waveforms.append(load_speech(Path(path), trim))
            self.labels.append(int(family != "genuine"))
            self.families.append(family)
            is_validation.append(speaker in validation)
        self.labels, is_validation = np.array(self.labels), np.array(is_validation)
        self.train, self.validation = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
        if len(np.unique(self.labels[self.validation])) < 2 or len(np.unique(self.labels[self.train])) < 2:
            raise DeepSpeakerError("the speaker split left one side without genuine or spoofed recordings; add recordings or speakers")

    def crops(self, indices, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.stack([crop_waveform(self.waveforms[i], length, rng) for i in indices]).astype(np.float32)


class DetectorBatches(SeededBatches):
    """Half genuine, half spoof random crops of the training recordings; seeded per epoch and batch."""

    def __init__(self, clips: SpoofClips, batch_size: int, length: int, steps: int, seed: int, initial_epoch: int = 0):
        super().__init__(steps, seed, initial_epoch)
        self.clips, self.batch_size, self.length = clips, batch_size, length
        self.genuine = clips.train[clips.labels[clips.train] == 0]
        self.spoofed = clips.train[clips.labels[clips.train] == 1]

    def batch(self, rng):
        half = self.batch_size // 2
        chosen = np.concatenate([rng.choice(self.genuine, half), rng.choice(self.spoofed, self.batch_size - half)])
        return self.clips.crops(chosen, self.length, rng), self.clips.labels[chosen].astype(np.float32)[:, None]
