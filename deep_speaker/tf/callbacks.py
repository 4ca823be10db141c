"""Callbacks of the training driver: validation EER, hard-negative refresh, best model, resume point."""

from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from ..checkpoints import save_model
from ..errors import CacheError
from ..fileio import atomic_replace, atomic_write_bytes
from ..scoring import CosineScorer, all_pairs_eer
from ..scoring.metrics import pair_masks
from .distribute import embed_locally, is_chief, local_batch_norm

STATE_IN_CHECKPOINT = "deep_speaker_state.json"


class RefreshNegatives(keras.callbacks.Callback):
    """Re-embed the training utterances for hard-negative mining at the start of every epoch."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.refresh(self.model)


class ValidationEER(keras.callbacks.Callback):
    """Log `val_eer`: all-pairs EER of the held-out utterances of the training speakers (fixed crops)."""

    def __init__(self, data, num_frames: int, embedding_model: keras.Model | None = None, scorer=None):
        super().__init__()
        self.crops = data.crops(data.validation, num_frames, None)
        self.labels = data.labels[data.validation]
        if not np.any(pair_masks(self.labels)[0]):
            raise CacheError(
                f"{data.working_dir}: no speaker has two held-out utterances, so validation EER is undefined; "
                "raise validation_fraction or add utterances (or delete split.json to split again)"
            )
        self.embedding_model = embedding_model
        self.scorer = scorer or CosineScorer()

    def on_epoch_end(self, epoch, logs=None):
        model = self.embedding_model or self.model
        embeddings = embed_locally(model, self.crops)
        logs["val_eer"] = all_pairs_eer(self.scorer.score_matrix(embeddings, embeddings), self.labels)


class DetectionEER(keras.callbacks.Callback):
    """Log `val_eer`: a detector's EER (label 1 vs 0) on fixed validation inputs; a model with one logit per frame
    is judged frame by frame."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.inputs, self.labels = inputs, np.asarray(labels).reshape(-1)

    def on_epoch_end(self, epoch, logs=None):
        from ..scoring.metrics import compute_eer

        scores = self.model.predict(self.inputs, batch_size=16, verbose=0).reshape(-1)
        logs["val_eer"] = compute_eer(scores[self.labels == 1], scores[self.labels == 0])[0]


class EpochTimer(keras.callbacks.Callback):
    """Log `epoch_seconds`, the wall time of each epoch (training, mining and validation)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


class BestModel(keras.callbacks.Callback):
    """Save `export()` (the model users load, not the training graph) to `path` whenever `monitor` improves."""

    def __init__(self, path: Path, monitor: str, mode: str, export, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.mode, self.export = Path(path), monitor, mode, export
        self.best = best if best is not None and math.isfinite(best) else (math.inf if mode == "min" else -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if (value < self.best) if self.mode == "min" else (value > self.best):
            self.best = float(value)
            if is_chief():
                export = self.export()
                with local_batch_norm(export):
                    save_model(export, self.path)


class ResumePoint(keras.callbacks.Callback):
    """After every epoch: `last.keras` (training model with optimizer, and the state inside it) then `state.json`
    (the same state, for people and tools), each atomically."""

    def __init__(self, run_dir: Path, best: BestModel, recipe: dict):
        super().__init__()
        self.run_dir, self.best, self.recipe = run_dir, best, recipe

    def on_epoch_end(self, epoch, logs=None):
        if not is_chief():
            return
        state = json.dumps({"epoch": epoch + 1, "best": float(self.best.best), "recipe": self.recipe}, indent=2)

        def write(temporary):  # the state travels inside the checkpoint too: one rename makes both current
            self.model.save(temporary)
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(STATE_IN_CHECKPOINT, state)

        with local_batch_norm(self.model):
            atomic_replace(self.run_dir / "last.keras", write, suffix=".tmp.keras")
        atomic_write_bytes(self.run_dir / "state.json", state.encode())


def checkpoint_state(path: Path) -> dict | None:
    """The resume state saved inside a `last.keras` (None for a file written without one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(STATE_IN_CHECKPOINT))
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        return None
