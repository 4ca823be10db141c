"""The published Keras 2 Deep Speaker files (`.h5`, `.h5.gz`) and this toolkit's version 0.1 `.keras` files
(feature-in, `FeatureSpec`), both rebuilt as speaker models of today's ResCNN.

Legacy files come in two layouts, both handled: a whole-model save (weights under `model_weights`, as
written by the reference's ModelCheckpoint) and a weights-only save (`layer_names` on the root).
A file may be gzip-compressed (`.h5.gz`). The architecture (width, embedding size) is read from the
file itself, so the user passes only a path; weights are loaded by layer name, strictly.
"""

from __future__ import annotations

import gzip
import io
import zlib
from contextlib import contextmanager
from pathlib import Path

import h5py
import keras
import numpy as np

from ..checkpoints import assign_weights_by_name, max_checkpoint_bytes
from ..errors import CheckpointError
from ..features import NUM_FBANKS, FeatureConfig
from ..models import build_backbone, build_speaker_model
from ..models.registry import MAX_EMBEDDING_DIM, MAX_WIDTH
from ..models.rescnn import STAGE_FILTERS
from ..models.speaker_model import FUSION, build_fused

RESCNN_FREQUENCY_BINS = NUM_FBANKS // 16  # four stride-2 stages: 64 filterbanks -> 4 bins


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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


def load_legacy_checkpoint(path, features: FeatureConfig = FeatureConfig()) -> keras.Model:
    """The speaker model of a Keras 2 file (triplet or softmax; a softmax classifier is ignored)."""
    with legacy_weights(path) as weights:
        return _rescnn_from_weights(weights, features, path)


def from_version_0_1(old: keras.Model, source) -> keras.Model:
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
