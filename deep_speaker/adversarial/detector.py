"""The spoof gate: a trained detector (`train-detector`) judging whole recordings, for the `Verifier`.

`SpoofDetector(path)` is a `SpoofGate`: called with a recording it returns None for genuine speech, else the reason
to reject it. Its threshold (beside the model, `NAME.keras.detector.json`) rejects 1 % of the validation speakers'
genuine recordings, scored whole as the gate scores them, and names the weights it was set for, so a threshold file
written by hand, or left beside other (say untrained) weights, is refused; `threshold=` overrides it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np

from ..audio import SAMPLE_RATE, Recording, name_of
from ..errors import CheckpointError, TrainingError
from ..fileio import atomic_write_bytes
from ..models.detector import DETECTOR_FEATURES, DETECTOR_NAME
from ..models.speaker_model import weights_fingerprint


def threshold_path(model_path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.name}.detector.json")


THRESHOLD_RULE = "1 % of the validation speakers' genuine recordings (whole) rejected"


def save_threshold(model_path, model: keras.Model, genuine_scores) -> float:
    """Set and write the threshold of the detector `model` (saved at `model_path`) from its scores of genuine
    validation recordings; refuses a detector that scores them all alike (it learnt nothing). Returns the threshold."""
    genuine_scores = np.asarray(genuine_scores, np.float64)
    if genuine_scores.size < 2 or not np.all(np.isfinite(genuine_scores)) or np.ptp(genuine_scores) <= 1e-6:
        raise TrainingError(
            f"{model_path}: the detector scores the {genuine_scores.size} genuine validation recordings alike "
            f"({np.unique(genuine_scores)[:3]}); it learnt nothing, so no threshold is set. Train longer or on more spoofs"
        )
    threshold = float(np.quantile(genuine_scores, 0.99))
    record = {
        "threshold": threshold,
        "rule": THRESHOLD_RULE,
        "genuine_recordings": int(genuine_scores.size),
        "weights": weights_fingerprint(model),
    }
    atomic_write_bytes(threshold_path(model_path), json.dumps(record, indent=2).encode())
    return threshold


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_threshold(model_path, model: keras.Model) -> float:
    """The threshold `save_threshold` wrote for these weights; anything else (unreadable, not a number, set for
    other weights or by hand) is a `CheckpointError` naming the file."""
    path = threshold_path(model_path)
    if not path.is_file():
        raise CheckpointError(f"{model_path}: its threshold {path} is missing; pass one")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable detector threshold file ({error})") from None
    threshold = record.get("threshold") if isinstance(record, dict) else None
    if not _finite_number(threshold):
        raise CheckpointError(f"{path}: no finite number under 'threshold' (found {threshold!r}); train-detector writes it")
    if record.get("weights") != weights_fingerprint(model):
        raise CheckpointError(
            f"{path}: this threshold was not set for the weights of {model_path} (it names {record.get('weights')!r}); "
            "thresholds come from train-detector on the trained detector, or pass one explicitly"
        )
    return float(threshold)


def recording_score(model: keras.Model, recording, sample_rate: int = SAMPLE_RATE) -> float:
    """A detector's spoof logit for a whole file, waveform or `Recording` (trimmed as the detector was trained)."""
    speech = Recording.of(recording, sample_rate).speech(DETECTOR_FEATURES.trim)
    # a direct call: recordings differ in length, and predict_on_batch would trace a graph for each new one
    return float(keras.ops.convert_to_numpy(model(speech[None].astype(np.float32), training=False))[0, 0])


class SpoofDetector:
    """A recording -> P(spoof) logit; `gate(recording)` (or calling it) -> None or the reason to reject."""

    def __init__(self, path, threshold: float | None = None):
        from ..checkpoints import load_keras_file

        self.path = Path(path)
        self.model = load_keras_file(self.path)
        if self.model.name != DETECTOR_NAME:
            raise CheckpointError(f"{self.path}: not a spoof detector (model {self.model.name!r}); train one with `train-detector`")
        if threshold is None:
            threshold = read_threshold(self.path, self.model)
        if not _finite_number(threshold):
            raise CheckpointError(f"{self.path}: the detector threshold must be a finite number, got {threshold!r}")
        self.threshold = threshold

    def score(self, recording, sample_rate: int = SAMPLE_RATE) -> float:
        """The spoof logit of a file or waveform."""
        return recording_score(self.model, recording, sample_rate)

    def __call__(self, recording) -> str | None:
        score = self.score(recording)
        if score < self.threshold:
            return None
        name = name_of(recording) or "the recording"
        return f"{name} looks spoofed or adversarial (detector score {score:.2f} >= {self.threshold:.2f})"
