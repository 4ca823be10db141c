"""One home per model, keyed by its fingerprint (`models.model_fingerprint`: its weights and front end, not its file
name): what the toolkit learns about a model, found wherever the checkpoint is copied, renamed or converted.

    $DEEP_SPEAKER_HOME/models/<fingerprint>/      (default ~/.deep_speaker; the user's, written by the toolkit)
        calibration[.<scorer>][.<seconds>s].json   operating points and LLR map (`scoring.calibration`)
        <scorer>.npz                               a fitted score back end (`scoring.backends`)
        teacher/<corpus digest>.npy                its embeddings of a training corpus, for distillation (`tf.train`)
        window_calibration/<run digest>/           the finished conditions of an interrupted `calibrate --windows`
    deep_speaker/pretrained/models/<fingerprint>/  the shipped models' homes (package data, read after the user's)

Two things stay with files rather than models, on purpose: a calibration and a spoof detector's threshold are also
written beside their checkpoint, so that copying the file to another machine takes them along; and the ONNX Runtime
copy of a checkpoint is cached by the file's SHA-256 (`exported.onnx_cache_path`), because reading a fingerprint
means loading the weights, which is the TensorFlow start-up that copy exists to avoid.
"""

from __future__ import annotations

from pathlib import Path

from .fileio import toolkit_home

SHIPPED_HOMES = Path(__file__).resolve().parent / "pretrained" / "models"


def user_home(fingerprint: str) -> Path:
    """The user's folder for the model `fingerprint` (not created here)."""
    return toolkit_home() / "models" / fingerprint


def shipped_home(fingerprint: str) -> Path:
    return SHIPPED_HOMES / fingerprint


def find(fingerprint: str, name: str, legacy: Path | None = None) -> Path | None:
    """The file `name` of the model `fingerprint`: the user's, else the shipped one, else None. A file the user's
    toolkit wrote before homes existed (`legacy`) moves into the user's home the first time it is looked for."""
    mine = user_home(fingerprint) / name
    if not mine.is_file() and legacy is not None and legacy.is_file():
        mine.parent.mkdir(parents=True, exist_ok=True)
        legacy.replace(mine)
    return next((path for path in (mine, shipped_home(fingerprint) / name) if path.is_file()), None)
