"""Checkpoint I/O: the published Keras 2 `.h5` files (loaded by layer name, strictly), Keras 3 `.keras` files,
and the toolkit's version 0.1 `.keras` files (feature-in, `FeatureSpec`), all returned as speaker models.

Legacy files come in two layouts, both handled: a whole-model save (weights under `model_weights`, as
written by the reference's ModelCheckpoint) and a weights-only save (`layer_names` on the root).
A file may be gzip-compressed (`.h5.gz`). The architecture (width, embedding size) is read from the
file itself, so the user passes only a path.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import h5py
import keras
import numpy as np

from .errors import CheckpointError, DeepSpeakerError
from .features import NUM_FBANKS, FeatureConfig
from .fileio import atomic_replace
from .models import build_backbone, build_speaker_model
from .models.registry import MAX_EMBEDDING_DIM, MAX_WIDTH
from .models.rescnn import STAGE_FILTERS
from .models.speaker_model import (
    FUSION,
    build_fused,
    check_fused_head,
    feature_config_of,
    has_head,
    require_speaker_model,
)

NATIVE_SUFFIXES = (".keras",)
RESCNN_FREQUENCY_BINS = NUM_FBANKS // 16  # four stride-2 stages: 64 filterbanks -> 4 bins
MAX_CHECKPOINT_MB = 2048  # a `.gz` checkpoint may inflate to this (the published softmax file is 283 MB)


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def max_checkpoint_bytes() -> int:
    return int(float(os.environ.get("DEEP_SPEAKER_MAX_CHECKPOINT_MB", MAX_CHECKPOINT_MB)) * 2**20)


def _gunzip(path: Path) -> bytes:
    """Decompress a `.gz` checkpoint, refusing one that inflates past the checkpoint size limit (a gzip bomb)."""
    limit = max_checkpoint_bytes()
    with gzip.open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(
            f"{path}: decompresses to more than {limit // 2**20} MB, the checkpoint size limit "
            "(raise DEEP_SPEAKER_MAX_CHECKPOINT_MB if the file is trusted)"
        )
    return data


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".gz":
            return h5py.File(io.BytesIO(_gunzip(path)), "r")
        return h5py.File(path, "r")
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise CheckpointError(f"{path}: not an HDF5 checkpoint ({error})") from error


@contextmanager
def legacy_weights(path):
    """{layer name: [HDF5 datasets in the file's weight order]} of a Keras 2 file, read lazily: shapes can be
    checked against a model before a single value is read (a tiny file may declare gigantic arrays)."""
    path = Path(path)
    with _open_hdf5(path) as h5:
        group = h5["model_weights"] if "model_weights" in h5 else h5
        if "layer_names" not in group.attrs:
            raise CheckpointError(
                f"{path}: HDF5 file without Keras 2 `layer_names`; a Keras 3 `.weights.h5` holds no architecture: "
                "build the model (build_backbone) and call `load_weights`, or save it as `.keras`"
            )
        weights = {}
        for layer_name in map(_decode, group.attrs["layer_names"]):
            if layer_name not in group or not isinstance(group[layer_name], h5py.Group):
                continue
            weight_names = [_decode(n) for n in group[layer_name].attrs.get("weight_names", [])]
            datasets = [group[layer_name].get(n) for n in weight_names]
            if datasets and all(isinstance(d, h5py.Dataset) for d in datasets):
                weights[layer_name] = datasets
        yield weights


def infer_rescnn_args(weights: dict, source) -> dict:
    """Width multiplier and embedding size of the ResCNN whose weights (arrays or datasets) these are.

    Refuses sizes no ResCNN of this toolkit has (width up to 4, embedding up to 4096) before anything is built.
    """
    affine = weights.get("affine", [])
    if len(affine) != 2 or len(affine[0].shape) != 2:
        raise CheckpointError(f"{source}: no `affine` layer (kernel and bias); not a Deep Speaker ResCNN checkpoint")
    affine_in, embedding_dim = (int(n) for n in affine[0].shape)
    last_filters, remainder = divmod(affine_in, RESCNN_FREQUENCY_BINS)
    width = last_filters / STAGE_FILTERS[-1]
    if remainder or not 0 < width <= MAX_WIDTH or not 0 < embedding_dim <= MAX_EMBEDDING_DIM:
        raise CheckpointError(
            f"{source}: `affine` declares shape ({affine_in}, {embedding_dim}), which is no ResCNN of width up to "
            f"{MAX_WIDTH} and embedding size up to {MAX_EMBEDDING_DIM}; refused before building anything"
        )
    return {"width": width, "embedding_dim": embedding_dim}


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


def load_legacy_checkpoint(path, features: FeatureConfig = FeatureConfig()) -> keras.Model:
    """The speaker model of a Keras 2 file (triplet or softmax; a softmax classifier is ignored)."""
    with legacy_weights(path) as weights:
        return _rescnn_from_weights(weights, features, path)


def _from_version_0_1(old: keras.Model, source) -> keras.Model:
    """A speaker model from a feature-in `.keras` file of version 0.1 (ResCNN, `FeatureSpec`, maybe a fused head)."""
    names = {layer.name for layer in old.layers}
    spec = old.get_layer("features").features if "features" in names else {}
    features = FeatureConfig.from_dict(spec)
    weights = {layer.name: layer.get_weights() for layer in old.layers if layer.weights and not isinstance(layer, keras.Model)}
    model = _rescnn_from_weights(weights, features, source)
    if FUSION not in names:
        return model
    fusion = old.get_layer(FUSION)
    head = next(layer for layer in old.layers if isinstance(layer, keras.Model))
    return build_fused(model, head, fusion.mode, fusion.weight, trained=fusion.trained, base_fingerprint=fusion.base_fingerprint)


def _rescnn_from_weights(weights: dict[str, list[np.ndarray]], features: FeatureConfig, source) -> keras.Model:
    """A ResCNN speaker model sized from `weights` and loaded from them strictly by layer name."""
    backbone = build_backbone("rescnn", features.num_fbanks, **infer_rescnn_args(weights, source))
    assign_weights_by_name(backbone, weights, source)
    return build_speaker_model(backbone, features, name="ResCNN")


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


def load_model(path) -> keras.Model:
    """The speaker model (waveform in, L2-normalised embedding out) from any checkpoint a user may have.

    - Keras 2 `.h5` / `.h5.gz` (whole model or weights only; triplet or softmax, the softmax head ignored);
    - Keras 3 `.keras` written by this toolkit (speaker models, version 0.1 feature-in models too).
    A fused model whose head was never trained, or was trained on another base, is refused.
    """
    path = Path(path)
    if path.suffix not in NATIVE_SUFFIXES:
        return load_legacy_checkpoint(path)
    model = load_keras_file(path)
    names = {layer.name for layer in model.layers}
    if "fbank" not in names and "affine" in names:
        model = _from_version_0_1(model, path)
    require_speaker_model(model, path)
    if has_head(model):
        check_fused_head(model, path)
    return model


def check_features(model: keras.Model, features: FeatureConfig, source) -> None:
    """Refuse to train or test a model on features other than those it was built for."""
    expected = feature_config_of(model)
    if replace(expected, trim=features.trim) != features:
        raise CheckpointError(
            f"{source}: the model takes {expected.describe()}, the feature cache holds {features.describe()}; "
            "use a cache built with the model's features or the matching checkpoint",
            cli_hint="rebuild the cache with matching `build-mfcc --energies/--normalisation`",
        )


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
