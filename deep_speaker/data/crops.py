"""Batches of random crops for the adversarial phases (AdvGAN, PGD fine-tuning, AGAIN-VC), seeded per epoch and
batch (`SeededBatches`)."""

from __future__ import annotations

import numpy as np

from ..audio import crop_waveform
from ..features import crop_or_pad
from .seeded import SeededBatches


class WaveformCrops(SeededBatches):
    """`steps` batches an epoch of `batch_size` random `length`-sample crops of `waveforms`, each with its label."""

    def __init__(self, waveforms: list, labels: np.ndarray, batch_size: int, length: int, steps: int, seed: int, initial_epoch: int = 0):
        super().__init__(steps, seed, initial_epoch)
        self.waveforms, self.labels, self.batch_size, self.length = waveforms, np.asarray(labels), batch_size, length

    def batch(self, rng):
        chosen = rng.choice(len(self.waveforms), self.batch_size)
        crops = np.stack([crop_waveform(self.waveforms[i], self.length, rng) for i in chosen]).astype(np.float32)
        return crops, self.targets(chosen, rng)

    def targets(self, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.labels[chosen]


class TargetedCrops(WaveformCrops):
    """Crops of recordings of speakers `labels`, each with a target: the embedding (a row of `embeddings`) of a
    random recording of another speaker (AdvGAN's impersonation goal)."""

    def __init__(self, waveforms: list, labels: np.ndarray, embeddings: np.ndarray, *args, **kwargs):
        super().__init__(waveforms, labels, *args, **kwargs)
        self.embeddings = embeddings

    def targets(self, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.embeddings[[int(rng.choice(np.flatnonzero(self.labels != self.labels[i]))) for i in chosen]]


def with_halves_swapped(segments: np.ndarray) -> np.ndarray:
    """Each segment with its two halves exchanged: the same statistics without their timing (AGAIN-VC's condition)."""
    half = segments.shape[1] // 2
    return np.concatenate([segments[:, half:], segments[:, :half]], axis=1)


class MelSegments(SeededBatches):
    """AGAIN-VC's self-reconstruction batches: `batch_size` random `frames`-frame segments of the spectrograms, as
    ((segment, the segment with its halves swapped), segment)."""

    def __init__(self, spectrograms: list, batch_size: int, frames: int, steps: int, seed: int, initial_epoch: int = 0):
        super().__init__(steps, seed, initial_epoch)
        self.spectrograms, self.batch_size, self.frames = spectrograms, batch_size, frames

    def batch(self, rng):
        chosen = rng.choice(len(self.spectrograms), self.batch_size)
        return reconstruction_pairs(np.stack([crop_or_pad(self.spectrograms[i], self.frames, rng) for i in chosen]))


def reconstruction_pairs(segments: np.ndarray) -> tuple:
    """((segments, their conditions), segments): what AGAIN-VC reconstructs from what."""
    segments = segments.astype(np.float32)
    return (segments, with_halves_swapped(segments)), segments
