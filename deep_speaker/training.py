"""Softmax pre-training and hard-negative triplet training of ResCNN on a feature cache.

Both run through `keras.Model.fit` with in-memory features and random 160-frame crops, so the model
never waits for data. Each run lives in `<working_dir>/<softmax|triplet>/`:
    last.keras     model + optimizer after the last finished epoch (resume point)
    best.keras     best model so far by the validation criterion
    state.json     epoch counter and best validation value, written atomically with last.keras
    training.csv   one row of metrics per epoch; tensorboard/ for TensorBoard
Killed at any moment, the same command resumes from the last finished epoch with its counter intact.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .cache import CacheError, atomic_write_bytes, read_feature_config, read_manifest
from .checkpoints import assign_weights_by_name, check_features, load_model, save_model
from .config import ConfigError, HeadConfig, SoftmaxConfig, TripletConfig
from .features import FeatureConfig, crop_or_pad
from .layers import CosineLogits
from .models import build_rescnn, embedding_model_from
from .models.heads import build_fused, build_head, head_input_model
from .scoring import compute_eer

SPLIT_FILE = "split.json"
SOFTMAX_LOSSES = ("softmax", "amsoftmax")


class SpeakerFeatures:
    """All cached features of a working directory in memory, with speaker labels and a train/validation split.

    The split (per speaker, the last `validation_fraction` of its utterances held out) is stored in
    `split.json` the first time, so softmax, triplet and `test-model` all use the same held-out utterances.
    """

    def __init__(self, working_dir, validation_fraction: float = 0.2):
        self.working_dir = Path(working_dir)
        entries = read_manifest(self.working_dir)
        self.feature_config = read_feature_config(self.working_dir) or FeatureConfig()
        self.utterance_ids = [e.utterance_id for e in entries]
        self.speakers = sorted({e.speaker for e in entries})
        speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([speaker_index[e.speaker] for e in entries])
        self.features = [np.load(e.feature_path) for e in entries]
        self.train, self.validation = self._split(validation_fraction)

    def _split(self, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        split_path = self.working_dir / SPLIT_FILE
        if split_path.is_file():
            held_out = set(json.loads(split_path.read_text())["validation"])
        else:
            held_out = set()
            for label in range(len(self.speakers)):
                members = [self.utterance_ids[i] for i in np.flatnonzero(self.labels == label)]
                count = int(round(len(members) * validation_fraction)) if len(members) > 1 else 0
                held_out.update(members[len(members) - count :])
            atomic_write_bytes(split_path, json.dumps({"validation": sorted(held_out)}, indent=1).encode())
        is_validation = np.array([u in held_out for u in self.utterance_ids])
        return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)

    def crops(self, indices, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
        """(len(indices), num_frames, 64, 1) crops; random positions if `rng`, else the first frames."""
        return np.stack([crop_or_pad(self.features[i], num_frames, rng) for i in indices])[..., None]


class SoftmaxBatches(keras.utils.PyDataset):
    """Random crops of random training utterances with speaker labels; batch k of epoch e is seeded by (seed, e, k).

    With `augment`, each crop is masked as in SpecAugment (`mask_spans`).
    """

    def __init__(self, data: SpeakerFeatures, config, initial_epoch: int = 0, augment: bool = False):
        super().__init__()
        self.data, self.config, self.epoch, self.augment = data, config, initial_epoch, augment

    def __len__(self):
        return self.config.steps_per_epoch

    def __getitem__(self, index):
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        chosen = rng.choice(self.data.train, self.config.batch_size)
        crops = self.data.crops(chosen, self.config.num_frames, rng)
        if self.augment:
            mask_spans(crops, rng)
        return crops, self.data.labels[chosen]

    def on_epoch_end(self):
        self.epoch += 1


def mask_spans(crops: np.ndarray, rng: np.random.Generator, max_bands: int = 8, max_frames: int = 20) -> None:
    """SpecAugment-style masking in place: per crop, one band of filterbanks and one span of frames set to 0."""
    num_crops, num_frames, num_bands = crops.shape[:3]
    for crop, band_width, band_start, span, span_start in zip(
        crops,
        rng.integers(0, max_bands + 1, num_crops),
        rng.integers(0, max(1, num_bands - max_bands), num_crops),
        rng.integers(0, max_frames + 1, num_crops),
        rng.integers(0, max(1, num_frames - max_frames), num_crops),
    ):
        crop[:, band_start : band_start + band_width] = 0
        crop[span_start : span_start + span] = 0


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin: float = 0.1):
    """mean(max(cos(a, n) - cos(a, p) + margin, 0)) over a batch laid out [anchors; positives; negatives]."""
    anchor, positive, negative = ops.split(y_pred, 3, axis=0)
    return ops.mean(ops.relu(ops.sum(anchor * negative, -1) - ops.sum(anchor * positive, -1) + margin))


@keras.saving.register_keras_serializable(package="deep_speaker")
class TripletLoss(keras.losses.Loss):
    """`triplet_loss` as a configurable, serialisable Keras loss."""

    def __init__(self, margin: float = 0.1, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return triplet_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ActiveTriplets(keras.metrics.Mean):
    """Fraction of triplets with a non-zero loss: near 0 means the batches became too easy (or collapse)."""

    def __init__(self, margin: float = 0.1, name: str = "active_triplets", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def update_state(self, y_true, y_pred, sample_weight=None):
        anchor, positive, negative = ops.split(y_pred, 3, axis=0)
        violation = ops.sum(anchor * negative, -1) - ops.sum(anchor * positive, -1) + self.margin
        return super().update_state(ops.cast(violation > 0, "float32"))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


class TripletBatches(keras.utils.PyDataset):
    """[anchors; positives; negatives] crops. Each anchor's negative is, among `negative_candidates` random
    utterances of other speakers, the one the current model finds closest (embeddings refreshed by
    `refresh`, as the reference's lazy batcher refreshes its history)."""

    def __init__(self, data: SpeakerFeatures, config: TripletConfig, initial_epoch: int = 0):
        super().__init__()
        self.data, self.config, self.epoch = data, config, initial_epoch
        self.embeddings = None
        by_speaker = {}
        for index in data.train:
            by_speaker.setdefault(int(data.labels[index]), []).append(int(index))
        self.by_speaker = {s: np.array(u) for s, u in by_speaker.items() if len(u) >= 2}
        if len(self.by_speaker) < 2:
            raise CacheError(f"{data.working_dir}: triplet training needs at least 2 speakers with 2+ training utterances")

    def refresh(self, model: keras.Model) -> None:
        """Embed one crop of every training utterance with the current model."""
        rng = np.random.default_rng([self.config.seed, self.epoch, len(self) + 1])
        crops = self.data.crops(self.data.train, self.config.num_frames, rng)
        self.embeddings = np.zeros((len(self.data.features), model.output_shape[-1]), np.float32)
        self.embeddings[self.data.train] = model.predict(crops, batch_size=self.config.batch_size, verbose=0)

    def __len__(self):
        return self.config.steps_per_epoch

    def triplet_indices(self, rng: np.random.Generator) -> np.ndarray:
        """Utterance indices (3, batch/3): anchors, positives (same speaker) and hard negatives."""
        per_part = self.config.batch_size // 3
        speakers = rng.choice(list(self.by_speaker), per_part, replace=per_part > len(self.by_speaker))
        anchors, positives = np.array([rng.choice(self.by_speaker[s], 2, replace=False) for s in speakers]).T
        negatives = np.empty(per_part, dtype=int)
        for row, (anchor, speaker) in enumerate(zip(anchors, speakers)):
            candidates = self.data.train[self.data.labels[self.data.train] != speaker]
            candidates = rng.choice(candidates, min(self.config.negative_candidates, candidates.size), replace=False)
            if self.embeddings is not None:
                candidates = candidates[[np.argmax(self.embeddings[candidates] @ self.embeddings[anchor])]]
            negatives[row] = candidates[0]
        return np.stack([anchors, positives, negatives])

    def __getitem__(self, index):
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        chosen = self.triplet_indices(rng).ravel()
        return self.data.crops(chosen, self.config.num_frames, rng), np.zeros(len(chosen), np.float32)

    def on_epoch_end(self):
        self.epoch += 1


class RefreshNegatives(keras.callbacks.Callback):
    """Re-embed the training utterances for hard-negative mining at the start of every epoch."""

    def __init__(self, batches: TripletBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.refresh(self.model)


class ValidationEER(keras.callbacks.Callback):
    """Log `val_eer`: all-pairs EER of the held-out utterances of the training speakers (fixed crops)."""

    def __init__(self, data: SpeakerFeatures, num_frames: int, embedding_model: keras.Model | None = None):
        super().__init__()
        self.crops = data.crops(data.validation, num_frames, None)
        labels = data.labels[data.validation]
        self.same = labels[:, None] == labels[None, :]
        self.upper = np.triu(np.ones_like(self.same), k=1)
        if not np.any(self.upper & self.same):
            raise CacheError(
                f"{data.working_dir}: no speaker has two held-out utterances, so validation EER is undefined; "
                "raise --validation_fraction or add utterances (or delete split.json to split again)"
            )
        self.embedding_model = embedding_model

    def on_epoch_end(self, epoch, logs=None):
        model = self.embedding_model or self.model
        embeddings = model.predict(self.crops, batch_size=96, verbose=0)
        scores = embeddings @ embeddings.T
        logs["val_eer"] = compute_eer(scores[self.upper & self.same], scores[self.upper & ~self.same])[0]


class EpochTimer(keras.callbacks.Callback):
    """Log `epoch_seconds`, the wall time of each epoch (training, mining and validation)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


class ResumePoint(keras.callbacks.Callback):
    """After every epoch: `last.keras` (with optimizer) then `state.json`, both atomically."""

    def __init__(self, run_dir: Path, best_checkpoint: keras.callbacks.ModelCheckpoint, config):
        super().__init__()
        self.run_dir, self.best_checkpoint, self.config = run_dir, best_checkpoint, config

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.run_dir / "last.keras")
        state = {"epoch": epoch + 1, "best": float(self.best_checkpoint.best), "config": asdict(self.config)}
        atomic_write_bytes(self.run_dir / "state.json", json.dumps(state, indent=2).encode())


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint(save_best_only) whose file is written to a temporary name and renamed."""

    def _save_model(self, epoch, batch, logs):
        if self._should_save_model(epoch, batch, logs, self.filepath):
            save_model(self.model, self.filepath)


def _resume_state(run_dir: Path) -> dict | None:
    state_path = run_dir / "state.json"
    if state_path.is_file() and (run_dir / "last.keras").is_file():
        return json.loads(state_path.read_text())
    return None


def _fit(model, batches, run_dir: Path, config, monitor: str, mode: str, callbacks: list, state: dict | None, progress: bool, validation_data=None):
    best = AtomicModelCheckpoint(
        str(run_dir / "best.keras"),
        monitor=monitor,
        mode=mode,
        save_best_only=True,
        initial_value_threshold=state["best"] if state and math.isfinite(state["best"]) else None,
    )
    model.fit(
        batches,
        validation_data=validation_data,
        epochs=config.epochs,
        initial_epoch=state["epoch"] if state else 0,
        verbose=1 if progress else 0,
        callbacks=[
            EpochTimer(),
            *callbacks,
            best,
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.early_stopping_patience),
            keras.callbacks.CSVLogger(str(run_dir / "training.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard")),
            ResumePoint(run_dir, best, config),
        ],
    )
    return run_dir / "best.keras"


def _run_dir(working_dir, name: str, config) -> tuple[Path, dict | None]:
    run_dir = Path(working_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    return run_dir, _resume_state(run_dir)


def train_softmax(working_dir, config: SoftmaxConfig = SoftmaxConfig(), progress: bool = True) -> Path:
    """Softmax pre-training; returns the path of the best checkpoint (by validation accuracy)."""
    data = SpeakerFeatures(working_dir, config.validation_fraction)
    run_dir, state = _run_dir(working_dir, "softmax", config)
    if state:
        model = keras.saving.load_model(run_dir / "last.keras")
    else:
        if config.loss not in SOFTMAX_LOSSES:
            raise ConfigError(f"unknown softmax loss {config.loss!r}; choose from {SOFTMAX_LOSSES}")
        margin_loss = config.loss == "amsoftmax"
        model = build_rescnn(
            config.width,
            config.embedding_dim,
            features=data.feature_config,
            num_speakers=len(data.speakers),
            dropout=config.dropout,
            classifier="cosine" if margin_loss else "softmax",
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=AMSoftmaxLoss(config.margin, config.scale) if margin_loss else "sparse_categorical_crossentropy",
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    return _fit(
        model,
        SoftmaxBatches(data, config, initial_epoch=state["epoch"] if state else 0, augment=config.spec_augment),
        run_dir,
        config,
        monitor="val_accuracy",
        mode="max",
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_accuracy", mode="max", factor=config.reduce_lr_factor, patience=config.reduce_lr_patience
            ),
            ValidationEER(data, config.num_frames, embedding_model_from(model)),
        ],
        state=state,
        progress=progress,
        validation_data=(data.crops(data.validation, config.num_frames, None), data.labels[data.validation]),
    )


def train_triplet(working_dir, config: TripletConfig = TripletConfig(), initial_checkpoint=None, progress: bool = True) -> Path:
    """Triplet training from the best softmax checkpoint (by layer name); returns the best checkpoint (by val EER)."""
    data = SpeakerFeatures(working_dir, config.validation_fraction)
    run_dir, state = _run_dir(working_dir, "triplet", config)
    if state:
        model = keras.saving.load_model(run_dir / "last.keras")
    else:
        initial_checkpoint = Path(initial_checkpoint or Path(working_dir) / "softmax" / "best.keras")
        model = build_rescnn(config.width, config.embedding_dim, features=data.feature_config)
        pretrained = load_model(initial_checkpoint)
        check_features(pretrained, data.feature_config, initial_checkpoint)
        weights = {layer.name: layer.get_weights() for layer in pretrained.layers if layer.weights}
        assign_weights_by_name(model, weights, initial_checkpoint)
        model.compile(
            optimizer=keras.optimizers.SGD(config.learning_rate),
            loss=TripletLoss(config.margin),
            metrics=[ActiveTriplets(config.margin)],
        )
    batches = TripletBatches(data, config, initial_epoch=state["epoch"] if state else 0)
    return _fit(
        model,
        batches,
        run_dir,
        config,
        monitor="val_eer",
        mode="min",
        callbacks=[RefreshNegatives(batches), ValidationEER(data, config.num_frames)],
        state=state,
        progress=progress,
    )


@keras.saving.register_keras_serializable(package="deep_speaker")
class AMSoftmaxLoss(keras.losses.Loss):
    """Additive-margin softmax: cross-entropy of scale * (cos - margin on the true class), from `CosineLogits`."""

    def __init__(self, margin: float = 0.2, scale: float = 30.0, name: str = "am_softmax", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin, self.scale = margin, scale

    def call(self, y_true, y_pred):
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1])
        logits = self.scale * (y_pred - self.margin * one_hot)
        return keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


class PrecomputedInputs:
    """What a frozen base feeds the head (embeddings or frame-level features) for several random crops
    of every utterance, computed once. Same interface as `SpeakerFeatures` for the batch generators."""

    def __init__(self, data: SpeakerFeatures, input_model: keras.Model, config: HeadConfig):
        self.working_dir, self.labels, self.train, self.validation = data.working_dir, data.labels, data.train, data.validation
        rng = np.random.default_rng([config.seed, 7])
        indices = np.arange(len(data.features))
        crops = [data.crops(indices, config.num_frames, rng if k else None) for k in range(config.crops_per_utterance)]
        outputs = [input_model.predict(c, batch_size=config.batch_size, verbose=0) for c in crops]
        self.features = np.stack(outputs, axis=1)  # (utterances, crops, ...)

    def crops(self, indices, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
        """One precomputed crop per index: a random one with `rng`, else the first (deterministic)."""
        choice = rng.integers(0, self.features.shape[1], len(indices)) if rng is not None else np.zeros(len(indices), int)
        return self.features[np.asarray(indices), choice]


def tune_fusion_weight(base_embeddings: np.ndarray, head_embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(weight, EER) of score fusion w cos(base) + (1 - w) cos(head) minimising the all-pairs EER."""
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    base_scores, head_scores = base_embeddings @ base_embeddings.T, head_embeddings @ head_embeddings.T
    results = []
    for weight in np.linspace(0, 1, 21):
        scores = weight * base_scores + (1 - weight) * head_scores
        results.append((compute_eer(scores[upper & same], scores[upper & ~same])[0], float(weight)))
    eer, weight = min(results)
    return weight, eer


def _head_trainer(embedder: keras.Model, inputs, config: HeadConfig, learning_rate: float, classifier: CosineLogits) -> tuple[keras.Model, keras.utils.PyDataset, list]:
    """(model that `fit` trains, its batches, extra callbacks) for the configured loss."""
    optimizer = keras.optimizers.Adam(learning_rate)
    if config.loss == "amsoftmax":
        trainer = keras.Model(embedder.input, classifier(embedder.output))
        trainer.compile(optimizer=optimizer, loss=AMSoftmaxLoss(config.margin, config.scale))
        return trainer, SoftmaxBatches(inputs, config), []
    if config.loss == "triplet":
        embedder.compile(optimizer=optimizer, loss=TripletLoss(config.margin), metrics=[ActiveTriplets(config.margin)])
        batches = TripletBatches(inputs, config)
        return embedder, batches, [RefreshNegatives(batches)]
    raise ValueError(f"unknown head loss {config.loss!r}; choose from amsoftmax, triplet")


def train_head(working_dir, base_checkpoint, config: HeadConfig = HeadConfig(), progress: bool = True) -> dict[str, Path]:
    """Train a head on a frozen base (then optionally jointly); save one fused model per fusion mode.

    Returns {fusion mode: path}. The score-fusion weight is tuned on the held-out utterances of the
    training speakers, so a development trial list stays untouched for evaluation.
    """
    data = SpeakerFeatures(working_dir, config.validation_fraction)
    run_dir = Path(working_dir) / f"head_{config.head}_{config.loss}"
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    base = load_model(base_checkpoint)
    check_features(base, data.feature_config, base_checkpoint)
    base.trainable = False
    head = build_head(config.head, base, embedding_dim=config.embedding_dim, **_head_sizes(config))
    inputs = PrecomputedInputs(data, head_input_model(base, config.head), config)
    classifier = CosineLogits(len(data.speakers), name="am_classifier")
    trainer, batches, callbacks = _head_trainer(head, inputs, config, config.learning_rate, classifier)
    _fit_in_memory(trainer, batches, config.epochs, config, [*callbacks, ValidationEER(inputs, config.num_frames, head)], progress)

    if config.finetune_epochs:
        base.trainable = True
        joint = build_fused(base, head, config.head, "head")
        trainer, batches, callbacks = _head_trainer(joint, data, config, config.finetune_learning_rate, classifier)
        _fit_in_memory(trainer, batches, config.finetune_epochs, config, [*callbacks, ValidationEER(data, config.num_frames, joint)], progress)

    validation_crops = data.crops(data.validation, config.num_frames, None)
    head_only = build_fused(base, head, config.head, "head")
    weight, _ = tune_fusion_weight(
        base.predict(validation_crops, verbose=0), head_only.predict(validation_crops, verbose=0), data.labels[data.validation]
    )
    paths = {}
    for fusion in ("head", "concat", "score"):
        paths[fusion] = run_dir / f"fused_{fusion}.keras"
        save_model(build_fused(base, head, config.head, fusion, weight, trained=True), paths[fusion])
    atomic_write_bytes(run_dir / "head.json", json.dumps({"config": asdict(config), "fusion_weight": weight, "base": str(base_checkpoint)}, indent=2).encode())
    return paths


def _head_sizes(config: HeadConfig) -> dict:
    if config.head == "dense":
        return {"hidden_units": (config.hidden_units, config.hidden_units), "dropout": config.dropout}
    return {"channels": config.tdnn_channels}


def _fit_in_memory(trainer, batches, epochs: int, config: HeadConfig, callbacks: list, progress: bool) -> None:
    """Fit with early stopping on validation EER, restoring the best weights (head runs are minutes long)."""
    trainer.fit(
        batches,
        epochs=epochs,
        verbose=1 if progress else 0,
        callbacks=[
            *callbacks,
            keras.callbacks.EarlyStopping(monitor="val_eer", mode="min", patience=config.early_stopping_patience, restore_best_weights=True),
        ],
    )
