"""Operating points: decision thresholds on scores, calibrated on a development trial list.

A calibration belongs to a model's identity (`models.model_fingerprint`), not to a file name, so
re-saving, copying or converting a checkpoint keeps it. It is stored as JSON in the user's calibration
folder under that fingerprint (`$DEEP_SPEAKER_HOME/calibration`, default `~/.deep_speaker/calibration`)
and beside the checkpoint as `<checkpoint>.calibration.json`; the shipped models' calibrations come with
the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import CalibrationError
from ..fileio import atomic_write_bytes
from .metrics import compute_eer, threshold_at_false_accept_rate

OPERATING_POINTS = ("eer", "far1", "far0.1")
SUFFIX = ".calibration.json"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def calibration_home() -> Path:
    return Path(os.environ.get("DEEP_SPEAKER_HOME", Path.home() / ".deep_speaker")) / "calibration"


@dataclass(frozen=True)
class Calibration:
    """Thresholds at the EER and at false-accept rates of 1 % and 0.1 %, for the model `model` (fingerprint)."""

    eer: float
    far1: float
    far0_1: float
    eer_percent: float
    trials: str
    model: str = ""
    scorer: str = "cosine"

    @classmethod
    def from_scores(cls, target_scores, nontarget_scores, trials: str = "", model: str = "", scorer: str = "cosine") -> "Calibration":
        eer, threshold = compute_eer(target_scores, nontarget_scores)
        return cls(
            eer=threshold,
            far1=threshold_at_false_accept_rate(nontarget_scores, 0.01),
            far0_1=threshold_at_false_accept_rate(nontarget_scores, 0.001),
            eer_percent=100 * eer,
            trials=trials,
            model=model,
            scorer=scorer,
        )

    @classmethod
    def read(cls, path) -> "Calibration":
        """Parse a calibration file; anything malformed raises `CalibrationError` naming the file."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
            known = {f.name for f in fields(cls)}
            calibration = cls(**{k: v for k, v in values.items() if k in known})
            thresholds = [calibration.eer, calibration.far1, calibration.far0_1]
            if not all(isinstance(t, (int, float)) and abs(t) < float("inf") for t in thresholds):
                raise ValueError(f"thresholds must be finite numbers, got {thresholds}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            raise CalibrationError(f"{path}: not a readable calibration file ({error})") from error
        return calibration

    def threshold(self, operating_point: str) -> float:
        if operating_point not in OPERATING_POINTS:
            raise CalibrationError(f"unknown operating point {operating_point!r}; choose from {OPERATING_POINTS}")
        return {"eer": self.eer, "far1": self.far1, "far0.1": self.far0_1}[operating_point]


def beside(checkpoint) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + SUFFIX)


def find_calibration(fingerprint: str, checkpoint=None) -> Calibration | None:
    """The calibration of the model `fingerprint`: beside `checkpoint`, in the user's folder, or shipped.

    A file beside the checkpoint that names other weights is ignored (it is stale); one that names none
    (written before calibrations were keyed) is taken, as it sits beside its model.
    """
    candidates = [beside(checkpoint)] if checkpoint is not None else []
    candidates += [calibration_home() / f"{fingerprint}.json", *sorted(PRETRAINED_DIR.glob(f"*{SUFFIX}"))]
    for path in candidates:
        if path.is_file():
            calibration = Calibration.read(path)
            if calibration.model == fingerprint or (not calibration.model and checkpoint is not None and path == beside(checkpoint)):
                return calibration
    return None


def save_calibration(calibration: Calibration, checkpoint=None) -> list[Path]:
    """Store under the model's fingerprint in the user's folder, and beside `checkpoint` when given."""
    if not calibration.model:
        raise CalibrationError("a calibration to save must name its model (fingerprint)")
    data = json.dumps(asdict(calibration), indent=2).encode()
    paths = [calibration_home() / f"{calibration.model}.json"]
    if checkpoint is not None:
        paths.append(beside(checkpoint))
    for path in paths:
        atomic_write_bytes(path, data)
    return paths
