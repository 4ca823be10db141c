"""Checkpoint I/O: the published Keras 2 `.h5` files (loaded by layer name, strictly) and Keras 3 files.

Legacy files come in two layouts, both handled: a whole-model save (weights under `model_weights`, as
written by the reference's ModelCheckpoint) and a weights-only save (`layer_names` on the root).
A file may be gzip-compressed (`.h5.gz`). The architecture (width, embedding size) is read from the
file itself, so the user passes only a path.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import replace
from pathlib import Path

import h5py
import keras
import numpy as np

from .cache import atomic_replace
from .errors import CheckpointError
from .features import NUM_FBANKS, FeatureConfig
from .models import build_rescnn, embedding_model_from, feature_config_of
from .models.heads import base_of, weights_fingerprint
from .models.rescnn import FREQUENCY_REDUCTION, STAGE_FILTERS

NATIVE_SUFFIXES = (".keras",)


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".gz":
            return h5py.File(io.BytesIO(gzip.decompress(path.read_bytes())), "r")
        return h5py.File(path, "r")
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise CheckpointError(f"{path}: not an HDF5 checkpoint ({error})") from error


def read_legacy_weights(path) -> dict[str, list[np.ndarray]]:
    """{layer name: [arrays in the file's weight order]} from a Keras 2 HDF5 file."""
    path = Path(path)
    with _open_hdf5(path) as h5:
        group = h5["model_weights"] if "model_weights" in h5 else h5
        if "layer_names" not in group.attrs:
            raise CheckpointError(
                f"{path}: HDF5 file without Keras 2 `layer_names`; a Keras 3 `.weights.h5` holds no architecture: "
                "build the model (build_rescnn) and call `load_weights`, or save it as `.keras`"
            )
        weights = {}
        for layer_name in map(_decode, group.attrs["layer_names"]):
            if layer_name not in group:
                continue
            weight_names = [_decode(n) for n in group[layer_name].attrs.get("weight_names", [])]
            if weight_names:
                weights[layer_name] = [np.asarray(group[layer_name][n]) for n in weight_names]
        return weights


def is_legacy_checkpoint(path) -> bool:
    """True for a Keras 2 HDF5 file (what the reference wrote), False for anything else."""
    try:
        read_legacy_weights(path)
    except CheckpointError:
        return False
    return True


def infer_rescnn_args(weights: dict[str, list[np.ndarray]], source) -> dict:
    """Width multiplier and embedding size of the ResCNN whose weights these are."""
    if "affine" not in weights:
        raise CheckpointError(f"{source}: no `affine` layer; not a Deep Speaker ResCNN checkpoint")
    affine_in, embedding_dim = weights["affine"][0].shape
    last_filters = affine_in // (NUM_FBANKS // FREQUENCY_REDUCTION)
    return {"width": last_filters / STAGE_FILTERS[-1], "embedding_dim": int(embedding_dim)}


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
        found = [tuple(a.shape) for a in weights[layer.name]]
        if expected != found:
            mismatched.append(f"{layer.name} (model {expected}, file {found})")
            continue
        assigned.append(layer.name)
    if strict and (missing or mismatched):
        problems = []
        if missing:
            problems.append(f"{len(missing)} layer(s) missing from the file: {', '.join(missing)}")
        if mismatched:
            problems.append(f"{len(mismatched)} layer(s) with other shapes: {'; '.join(mismatched)}")
        raise CheckpointError(f"{source}: does not match the model; " + " and ".join(problems))
    for name in assigned:
        model.get_layer(name).set_weights(weights[name])
    return assigned


def load_legacy_checkpoint(path, num_speakers: int | None = None, strict: bool = True) -> keras.Model:
    """A ResCNN (embedding model, or softmax model with `num_speakers`) with a Keras 2 file's weights."""
    weights = read_legacy_weights(path)
    model = build_rescnn(**infer_rescnn_args(weights, path), num_speakers=num_speakers)
    assign_weights_by_name(model, weights, path, strict=strict)
    return model


def load_model(path) -> keras.Model:
    """The embedding model from any checkpoint a user may have.

    - Keras 2 `.h5` / `.h5.gz` (whole model or weights only; triplet or softmax, the softmax head ignored);
    - Keras 3 `.keras` (embedding or softmax model; a softmax model is cut at `affine`).
    """
    path = Path(path)
    if path.suffix in NATIVE_SUFFIXES:
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError, KeyError) as error:
            raise CheckpointError(f"{path}: cannot load Keras model ({error})") from error
        names = {layer.name for layer in model.layers}
        if "fusion" in names:
            check_fused_head(model, path)
        return embedding_model_from(model) if "dense" in names else model
    return load_legacy_checkpoint(path)


def check_fused_head(model: keras.Model, source) -> None:
    """Refuse a fused model whose head was never trained, or was trained on other base weights."""
    fusion = model.get_layer("fusion")
    if not fusion.trained:
        raise CheckpointError(f"{source}: its refinement head was never trained; train it with `train-head` first")
    found = weights_fingerprint(base_of(model))
    if found != fusion.base_fingerprint:
        raise CheckpointError(
            f"{source}: the head was trained on base weights {fusion.base_fingerprint}, but the base in the file is {found}; "
            "retrain the head on this base"
        )


def check_features(model: keras.Model, features: FeatureConfig, source) -> None:
    """Refuse to train or test a model on features other than those it was built for."""
    expected = feature_config_of(model)
    if replace(expected, trim=features.trim) != features:
        raise CheckpointError(
            f"{source}: the model takes {_describe_features(expected)}, the feature cache holds {_describe_features(features)}; "
            "rebuild the cache with matching `build-mfcc --energies/--normalisation` or pick the matching checkpoint"
        )


def _describe_features(config: FeatureConfig) -> str:
    return f"{config.energies} filterbank energies ({config.num_fbanks} bands, {config.sample_rate} Hz, {config.normalisation} normalisation)"


def save_model(model: keras.Model, path) -> None:
    """Save as a native Keras 3 `.keras` file, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: native checkpoints end in .keras")
    atomic_replace(path, model.save, suffix=".tmp.keras")
