"""The spoof gate: a trained detector (`train-detector`) judging whole recordings, for the `Verifier`.

`SpoofDetector(path)` is a `SpoofGate`: called with a recording it returns None for genuine speech, else the reason
to reject it. Its threshold (beside the model, `NAME.keras.detector.json`) rejects 1 % of the validation speakers'
genuine recordings, scored whole as the gate scores them; `threshold=` overrides it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np

from ..audio import SAMPLE_RATE, load_speech, to_model_input, trim_silence
from ..errors import CheckpointError
from ..fileio import atomic_write_bytes
from ..models.detector import DETECTOR_FEATURES, DETECTOR_NAME


def threshold_path(model_path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.name}.detector.json")


THRESHOLD_RULE = "1 % of the validation speakers' genuine recordings (whole) rejected"


def save_threshold(model_path, threshold: float, recordings: int) -> None:
    record = {"threshold": threshold, "rule": THRESHOLD_RULE, "genuine_recordings": recordings}
    atomic_write_bytes(threshold_path(model_path), json.dumps(record, indent=2).encode())


def recording_score(model: keras.Model, recording, sample_rate: int = SAMPLE_RATE) -> float:
    """A detector's spoof logit for a whole file or waveform (trimmed as the detector was trained)."""
    if isinstance(recording, (str, os.PathLike)):
        speech = load_speech(recording, DETECTOR_FEATURES.trim)
    else:
        speech = trim_silence(to_model_input(recording, sample_rate), DETECTOR_FEATURES.trim)
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
            if not threshold_path(self.path).is_file():
                raise CheckpointError(f"{self.path}: its threshold {threshold_path(self.path)} is missing; pass one")
            threshold = float(json.loads(threshold_path(self.path).read_text())["threshold"])
        if not math.isfinite(threshold):
            raise CheckpointError(f"{self.path}: the detector threshold must be a finite number, got {threshold!r}")
        self.threshold = threshold

    def score(self, recording, sample_rate: int = SAMPLE_RATE) -> float:
        """The spoof logit of a file or waveform."""
        return recording_score(self.model, recording, sample_rate)

    def __call__(self, recording) -> str | None:
        score = self.score(recording)
        if score < self.threshold:
            return None
        name = recording if isinstance(recording, (str, os.PathLike)) else "the recording"
        return f"{name} looks spoofed or adversarial (detector score {score:.2f} >= {self.threshold:.2f})"
