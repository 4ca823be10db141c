"""Training batches as `keras.utils.PyDataset`s: batch k of epoch e is seeded by (seed, e, k), so a resumed
run sees the same batches as an uninterrupted one.

- `ClassificationBatches`: random crops of random training utterances with speaker labels;
- `TripletBatches`: [anchors; positives; hard negatives], negatives mined with the current model;
- `AugmentedBatches`: waveform crops, speed-perturbed (each speed its own classes), augmented, featurised;
- `PrecomputedInputs`: what a frozen base feeds a head, computed once, with the `SpeakerFeatures` interface.
"""

from __future__ import annotations

import keras
import numpy as np

from ..audio import FRAME_LENGTH, FRAME_STEP
from ..errors import CacheError
from ..features import compute_features
from .augment import WaveformAugmentation, augment, fit_length, fit_length_exact, mask_spans, speed_perturb
from .split import SpeakerFeatures, SpeakerWaveforms


class ClassificationBatches(keras.utils.PyDataset):
    """(crops, speaker labels) of random training utterances; with `augment`, each crop is masked (`mask_spans`).

    With `teacher` (one target embedding per cached utterance) the targets are {"classes": labels, "teacher":
    the embedding of each crop's source utterance}, for distillation."""

    def __init__(self, data, run, initial_epoch: int = 0, augment: bool = False, workers: int = 1, teacher: np.ndarray | None = None):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.data, self.run, self.epoch, self.augment, self.teacher = data, run, initial_epoch, augment, teacher

    def __len__(self):
        return self.run.steps_per_epoch

    def __getitem__(self, index):
        rng = np.random.default_rng([self.run.seed, self.epoch, index])
        chosen = rng.choice(self.data.train, self.run.batch_size)
        crops = self.data.crops(chosen, self.run.num_frames, rng)
        if self.augment:
            mask_spans(crops, rng)
        return crops, targets(self.data, chosen, self.teacher)

    def on_epoch_end(self):
        self.epoch += 1


def targets(data, chosen, teacher: np.ndarray | None = None):
    """Speaker labels of examples `chosen`, with their source utterances' teacher embeddings if distilling."""
    labels = data.labels[chosen]
    return labels if teacher is None else {"classes": labels, "teacher": teacher[data.sources[chosen]]}


class AugmentedBatches(ClassificationBatches):
    """(features, labels) of random training utterances cut from their waveforms, augmented on the fly.

    Each example gets a speed from `speeds`; a perturbed copy counts as a new speaker (label + speed index x
    speakers), as WeSpeaker does, so `num_classes` is speakers x speeds. Then `augment` (rooms, noise,
    babble from other speakers, gain, channels), the features of the segment, and masking if `spec_augment`.
    `workers` threads prepare batches ahead of the model.
    """

    def __init__(
        self,
        data: SpeakerFeatures,
        waveforms: SpeakerWaveforms,
        run,
        augmentation: WaveformAugmentation = WaveformAugmentation(),
        speeds=(1.0,),
        noises=(),
        rirs=(),
        initial_epoch: int = 0,
        spec_augment: bool = False,
        workers: int = 1,
    ):
        super().__init__(data, run, initial_epoch, spec_augment, workers)
        self.waveforms, self.augmentation, self.speeds = waveforms.waveforms, augmentation, tuple(speeds)
        self.noises, self.rirs = list(noises), list(rirs)
        self.num_classes = len(data.speakers) * len(self.speeds)
        self.samples = (run.num_frames - 1) * FRAME_STEP + FRAME_LENGTH

    def example(self, utterance: int, speed: int, rng: np.random.Generator) -> np.ndarray:
        """Features (num_frames, bands) of one augmented segment of `utterance` at speed index `speed`."""
        factor = self.speeds[speed]
        segment = fit_length(self.waveforms[utterance], int(np.ceil(self.samples * factor)) + 1, rng)
        segment = fit_length_exact(speed_perturb(segment, factor), self.samples)
        label = self.data.labels[utterance]
        impostors = self.data.train[self.data.labels[self.data.train] != label]
        others = [self.waveforms[i] for i in rng.choice(impostors, min(7, impostors.size), replace=False)]
        segment = augment(segment, rng, self.augmentation, self.noises, self.rirs, others)
        return compute_features(segment, self.data.feature_config)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.run.seed, self.epoch, index])
        chosen = rng.choice(self.data.train, self.run.batch_size)
        speeds = rng.integers(0, len(self.speeds), self.run.batch_size)
        crops = np.stack([self.example(u, s, rng) for u, s in zip(chosen, speeds)])
        if self.augment:
            mask_spans(crops, rng)
        return crops, self.data.labels[chosen] + speeds * len(self.data.speakers)


class TripletBatches(keras.utils.PyDataset):
    """[anchors; positives; negatives] crops. Each anchor's negative is, among `negative_candidates` random
    utterances of other speakers, the one the current model finds closest (embeddings refreshed by
    `refresh`, as the reference's lazy batcher refreshes its history)."""

    def __init__(self, data, run, negative_candidates: int, initial_epoch: int = 0):
        super().__init__()
        self.data, self.run, self.negative_candidates, self.epoch = data, run, negative_candidates, initial_epoch
        self.embeddings = None
        by_speaker = {}
        for index in data.train:
            by_speaker.setdefault(int(data.labels[index]), []).append(int(index))
        self.by_speaker = {s: np.array(u) for s, u in by_speaker.items() if len(u) >= 2}
        if len(self.by_speaker) < 2:
            raise CacheError(f"{data.working_dir}: triplet training needs at least 2 speakers with 2+ training utterances")

    def refresh(self, model: keras.Model) -> None:
        """Embed one crop of every training utterance with the current model."""
        rng = np.random.default_rng([self.run.seed, self.epoch, len(self) + 1])
        crops = self.data.crops(self.data.train, self.run.num_frames, rng)
        self.embeddings = np.zeros((len(self.data.features), model.output_shape[-1]), np.float32)
        self.embeddings[self.data.train] = model.predict(crops, batch_size=self.run.batch_size, verbose=0)

    def __len__(self):
        return self.run.steps_per_epoch

    def triplet_indices(self, rng: np.random.Generator) -> np.ndarray:
        """Utterance indices (3, batch/3): anchors, positives (same speaker) and hard negatives."""
        per_part = self.run.batch_size // 3
        speakers = rng.choice(list(self.by_speaker), per_part, replace=per_part > len(self.by_speaker))
        anchors, positives = np.array([rng.choice(self.by_speaker[s], 2, replace=False) for s in speakers]).T
        negatives = np.empty(per_part, dtype=int)
        for row, (anchor, speaker) in enumerate(zip(anchors, speakers)):
            candidates = self.data.train[self.data.labels[self.data.train] != speaker]
            candidates = rng.choice(candidates, min(self.negative_candidates, candidates.size), replace=False)
            if self.embeddings is not None:
                candidates = candidates[[np.argmax(self.embeddings[candidates] @ self.embeddings[anchor])]]
            negatives[row] = candidates[0]
        return np.stack([anchors, positives, negatives])

    def __getitem__(self, index):
        rng = np.random.default_rng([self.run.seed, self.epoch, index])
        chosen = self.triplet_indices(rng).ravel()
        return self.data.crops(chosen, self.run.num_frames, rng), np.zeros(len(chosen), np.float32)

    def on_epoch_end(self):
        self.epoch += 1


class PrecomputedInputs:
    """What a frozen base feeds the head (embeddings or frame-level features) for several random crops
    of every utterance, computed once. Same interface as `SpeakerFeatures` for the batch generators."""

    def __init__(self, data: SpeakerFeatures, input_model: keras.Model, crops_per_utterance: int, run):
        self.working_dir, self.labels, self.train, self.validation = data.working_dir, data.labels, data.train, data.validation
        rng = np.random.default_rng([run.seed, 7])
        indices = np.arange(len(data.features))
        crops = [data.crops(indices, run.num_frames, rng if k else None) for k in range(crops_per_utterance)]
        outputs = [input_model.predict(c, batch_size=run.batch_size, verbose=0) for c in crops]
        self.features = np.stack(outputs, axis=1)  # (utterances, crops, ...)

    def crops(self, indices, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
        """One precomputed crop per index: a random one with `rng`, else the first (deterministic)."""
        choice = rng.integers(0, self.features.shape[1], len(indices)) if rng is not None else np.zeros(len(indices), int)
        return self.features[np.asarray(indices), choice]
