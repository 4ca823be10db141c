"""Keras model files: `.keras` read and written safely, whatever the model (speaker model, detector, generator).

Every failure to read is a `CheckpointError` naming the file; weights that are not all finite are refused; saves
are atomic. What a file holds is checked by its users: `model_files.load_model` for speaker models (and the Keras 2
`.h5` files, through `importers.legacy`), the detectors and generators by their own names.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np

from .errors import CheckpointError, DeepSpeakerError
from .fileio import atomic_replace

MAX_CHECKPOINT_MB = 2048  # a checkpoint may inflate to this (the published softmax file is 283 MB)


def max_checkpoint_bytes() -> int:
    return int(float(os.environ.get("DEEP_SPEAKER_MAX_CHECKPOINT_MB", MAX_CHECKPOINT_MB)) * 2**20)


def load_keras_file(path: Path) -> keras.Model:
    """Any Keras 3 `.keras` file, every failure as a `CheckpointError` naming the file; weights that are not all
    finite are refused (no other check of what it holds)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a Keras 3 .keras file (not a zip archive)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a file it cannot rebuild; none may escape raw
        cause = _root_cause(error)
        raise CheckpointError(f"{path}: cannot load Keras model ({type(cause).__name__}: {str(cause).splitlines()[0][:300]})") from error
    require_finite_weights(model, path)
    return model


def require_finite_weights(model: keras.Model, source) -> keras.Model:
    """Refuse a model any of whose weights is NaN or infinite (it would answer NaN, or garbage, for every input)."""
    bad = [weight.path for weight in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight)))]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{source}: weights hold NaN or infinity ({shown}); the model would score nothing but NaN")
    return model


def _root_cause(error: BaseException) -> BaseException:
    """Our own error behind Keras' wrapping (a bad feature recipe, say), else the error itself."""
    seen = error
    while seen is not None:
        if isinstance(seen, DeepSpeakerError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def assign_weights_by_name(model: keras.Model, weights: dict[str, list[np.ndarray]], source, strict: bool = True) -> list[str]:
    """Set every weighted layer of `model` from `weights` by layer name; returns the layers set.

    Strict: any weighted layer of the model absent from the file, or with another number or shape of
    weights, raises `CheckpointError` naming every such layer. Extra layers in the file (a softmax head,
    dropout) and names of weightless layers do not matter.
    """
    missing, mismatched, assigned = [], [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            missing.append(layer.name)
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(int(n) for n in a.shape) for a in weights[layer.name]]
        if expected != found:
            mismatched.append(f"{layer.name} (model {expected}, file {found})")
            continue
        assigned.append(layer.name)
    nonfinite = [name for name in assigned if not all(np.all(np.isfinite(np.asarray(array))) for array in weights[name])]
    if nonfinite:
        raise CheckpointError(f"{source}: weights of {', '.join(nonfinite)} hold NaN or infinity; the model would score nothing but NaN")
    if strict and (missing or mismatched):
        problems = []
        if missing:
            problems.append(f"{len(missing)} layer(s) missing from the file: {', '.join(missing)}")
        if mismatched:
            problems.append(f"{len(mismatched)} layer(s) with other shapes: {'; '.join(mismatched)}")
        raise CheckpointError(f"{source}: does not match the model; " + " and ".join(problems))
    for name in assigned:
        model.get_layer(name).set_weights([np.asarray(array) for array in weights[name]])
    return assigned


def check_save_path(path) -> Path:
    """Refuse, before any work, a path a model cannot be saved to."""
    path = Path(path)
    if path.suffix != ".keras":
        raise CheckpointError(f"{path}: models are saved as Keras 3 files ending in .keras")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a file name")
    return path


def save_model(model: keras.Model, path) -> None:
    """Save as a native Keras 3 `.keras` file, atomically."""
    atomic_replace(check_save_path(path), model.save, suffix=".tmp.keras")
