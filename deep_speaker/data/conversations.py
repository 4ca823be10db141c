"""Synthetic conversations from single-speaker recordings, the noise floors they are heard under, and the batches
the overlap detector trains on.

A conversation: 2-5 speakers taking turns of one or two utterances, pauses of 0.2-1.5 s, and a share of turns
(15 % unless told) starting 0.3-1 s before the previous one ends; its turns are the reference. `in_noise` puts it
at a speech level under a noise floor of one of `NOISE_KINDS`. The diarization and voice-activity benchmarks
measure on conversations of dev speakers; the overlap detector trains on those of training speakers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..audio import FRAME_LENGTH, FRAME_STEP, SAMPLE_RATE
from ..errors import ConfigError
from ..frontends.deep_speaker import num_frames_of
from .augment import babble, coloured_noise, fit_length, reverberate
from .seeded import SeededBatches

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "recorded", "white + room")
Turn = tuple[float, float, str]  # start and end in seconds, speaker


@dataclass(frozen=True)
class NoiseSources:
    """Recordings some noise kinds draw from: other speakers' speech (babble), noise recordings, room responses."""

    talkers: list = field(default_factory=list)
    recorded: list = field(default_factory=list)
    rooms: list = field(default_factory=list)


def conversation(
    recordings_by_speaker: dict[str, list],
    rng: np.random.Generator,
    load: Callable = np.asarray,
    overlap_probability: float = 0.15,
    max_speakers: int = 5,
) -> tuple[np.ndarray, list[Turn]]:
    """A conversation (float32 at 16 kHz, half a second of silence at the end) and its turns. `load` makes a
    silence-trimmed waveform of one entry of `recordings_by_speaker` (default: the entries are waveforms)."""
    if len(recordings_by_speaker) < 2:
        raise ConfigError(f"a conversation needs recordings of at least two speakers, got {len(recordings_by_speaker)}")
    most = min(max_speakers, len(recordings_by_speaker))
    speakers = list(rng.choice(sorted(recordings_by_speaker), size=int(rng.integers(2, most + 1)), replace=False))
    queues = {s: [recordings_by_speaker[s][i] for i in rng.permutation(len(recordings_by_speaker[s]))] for s in speakers}
    order = speakers + list(rng.choice(speakers, size=int(rng.integers(len(speakers), 3 * len(speakers)))))
    pieces, turns, cursor, previous = [], [], 0, None
    for speaker in order:
        if speaker == previous or not queues[speaker]:
            continue
        speech = np.concatenate([load(queues[speaker].pop()) for _ in range(min(int(rng.integers(1, 3)), len(queues[speaker])))])
        if turns and rng.random() < overlap_probability:
            start = max(0, cursor - int(rng.uniform(0.3, 1.0) * SAMPLE_RATE))  # overlaps the previous turn's end
        else:
            start = cursor + int(rng.uniform(0.2, 1.5) * SAMPLE_RATE)
        pieces.append((start, speech))
        turns.append((start / SAMPLE_RATE, (start + len(speech)) / SAMPLE_RATE, str(speaker)))
        cursor, previous = max(cursor, start + len(speech)), speaker
    signal = np.zeros(cursor + SAMPLE_RATE // 2, np.float32)
    for start, speech in pieces:
        signal[start : start + len(speech)] += speech
    return signal, turns


def noise_floor(kind: str, length: int, rng: np.random.Generator, sources: NoiseSources) -> np.ndarray:
    """`length` samples of the noise `kind` at unit RMS (float64)."""
    if kind not in NOISE_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")
    if not noise_kind_available(kind, sources):
        raise ConfigError(f"the noise kind {kind!r} needs recordings to draw from (NoiseSources)")
    if kind in ("white", "pink", "brown", "white + room"):
        noise = coloured_noise(kind.split()[0], length, rng).astype(np.float64)
    elif kind == "babble":
        noise = babble(sources.talkers, length, rng).astype(np.float64)
    elif kind == "hum":
        t = np.arange(length) / SAMPLE_RATE
        noise = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
    else:
        noise = fit_length(sources.recorded[int(rng.integers(len(sources.recorded)))], length, rng).astype(np.float64)
    return noise / np.sqrt(np.mean(noise**2) + 1e-20)


def in_noise(
    speech: np.ndarray,
    rng: np.random.Generator,
    kind: str = "white",
    floor_dbfs: float = -60.0,
    peak_dbfs: float | None = None,
    sources: NoiseSources = NoiseSources(),
) -> np.ndarray:
    """`speech` scaled to peak at `peak_dbfs` (None: as it is), reverberated by one of the rooms for "white + room",
    with the noise `kind` at `floor_dbfs` RMS added (float32)."""
    if kind == "white + room" and sources.rooms:
        speech = reverberate(speech, sources.rooms[int(rng.integers(len(sources.rooms)))])
    if peak_dbfs is not None:  # after the room, which changes the peak (reverberation keeps the power, not the peak)
        speech = speech * (10 ** (peak_dbfs / 20) / max(float(np.abs(speech).max()), 1e-12))
    return (speech + 10 ** (floor_dbfs / 20) * noise_floor(kind, speech.size, rng, sources)).astype(np.float32)


def talkers_at(turns: list[Turn], times: np.ndarray) -> np.ndarray:
    """How many turns cover each of `times` (seconds)."""
    count = np.zeros(len(times), np.int32)
    for start, end, _ in turns:
        count += (times >= start) & (times < end)
    return count


def frame_centres(num_samples: int) -> np.ndarray:
    """The centre (seconds) of each 25 ms analysis frame, every 10 ms, of `num_samples` samples."""
    return (np.arange(num_frames_of(num_samples)) * FRAME_STEP + FRAME_LENGTH / 2) / SAMPLE_RATE


def block_centres(num_samples: int) -> np.ndarray:
    """The centre (seconds) of each 10 ms block of `num_samples` samples."""
    return (np.arange(-(-num_samples // FRAME_STEP)) + 0.5) * FRAME_STEP / SAMPLE_RATE


def crop_turns(turns: list[Turn], start: float, end: float) -> list[Turn]:
    """The turns inside [start, end), cut to it and shifted to start at 0."""
    return [(max(a, start) - start, min(b, end) - start, s) for a, b, s in turns if b > start and a < end]


class OverlapBatches(SeededBatches):
    """Crops of synthetic conversations of the given speakers, each under a random noise floor and level, with 1 per
    analysis frame where two or more speakers talk: what the overlap detector learns from. Seeded per epoch and
    batch, so a resumed run sees the same batches."""

    def __init__(
        self, waveforms_by_speaker: dict, sources: NoiseSources, batch_size: int, length: int, steps: int, seed: int, initial_epoch: int = 0
    ):
        super().__init__(steps, seed, initial_epoch)
        self.waveforms, self.sources = waveforms_by_speaker, sources
        self.kinds = [k for k in NOISE_KINDS if noise_kind_available(k, sources)]
        self.batch_size, self.length = batch_size, length

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One crop (a random stretch of a conversation with every other turn overlapping, under a random floor
        from -75 to -30 dBFS with speech peaking from -35 to -1 dBFS) and its overlap labels per frame."""
        signal, turns = conversation(self.waveforms, rng, overlap_probability=0.5, max_speakers=3)
        start = int(rng.integers(0, max(1, signal.size - self.length)))
        crop = np.zeros(self.length, np.float32)
        piece = signal[start : start + self.length]
        crop[: piece.size] = piece
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        noisy = in_noise(crop, rng, kind, float(rng.uniform(-75, -30)), float(rng.uniform(-35, -1)), self.sources)
        labels = talkers_at(crop_turns(turns, start / SAMPLE_RATE, (start + self.length) / SAMPLE_RATE), frame_centres(self.length)) >= 2
        return noisy, labels.astype(np.float32)

    def batch(self, rng):
        examples = [self.example(rng) for _ in range(self.batch_size)]
        return np.stack([x for x, _ in examples]), np.stack([y for _, y in examples])


def noise_kind_available(kind: str, sources: NoiseSources) -> bool:
    """Whether `sources` hold what the noise `kind` draws from."""
    needed = {"babble": sources.talkers, "recorded": sources.recorded, "white + room": sources.rooms}.get(kind)
    return needed is None or bool(needed)
