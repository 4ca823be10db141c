"""A speaker model: front end + backbone + L2 normalisation (+ optional head and fusion), one `keras.Model`.

    waveform (batch, samples) -> Fbank `fbank` -> backbone `backbone` -> taps
        -> L2Normalize `ln` (the base embedding) [-> head on a tap -> EmbeddingFusion `fusion`]

Waveform-in, so gradients reach the audio and the whole model exports as one graph. `feature_model`
gives the same model from features, which the toolkit feeds from its NumPy features (cache, encoder).
A model's identity is `model_fingerprint`: its weights and its front end, not the file it came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import keras
import numpy as np

from ..errors import CheckpointError
from ..features import FeatureConfig
from ..layers import EmbeddingFusion, Fbank, L2Normalize
from .registry import BACKBONE_NAME, check_backbone

FRONT_END = "fbank"
BASE_EMBEDDING = "ln"
FUSION = "fusion"


def _assemble(
    fbank: Fbank,
    backbone: keras.Model,
    ln: L2Normalize,
    head=None,
    fusion=None,
    from_features: bool = False,
    name: str = "speaker_model",
    as_backbone: bool = False,
) -> keras.Model:
    """Wire the parts (shared, not copied) into a new graph, waveform-in or features-in; `as_backbone`: features-in
    with the backbone's taps, the final embedding as `embedding` (a whole speaker model inside another)."""
    if from_features or as_backbone:
        inputs = keras.Input(shape=(None, fbank.feature_config.num_fbanks), name=f"{name}_features" if as_backbone else "features")
        taps = backbone(inputs)
    else:
        inputs = keras.Input(shape=(None,), name="waveform")
        taps = backbone(fbank(inputs))
    outputs = ln(taps["embedding"])
    if head is not None:
        outputs = fusion([outputs, head(outputs if head_tap(head) == "embedding" else taps["frames"])])
    return keras.Model(inputs, {"frames": taps["frames"], "embedding": outputs} if as_backbone else outputs, name=name)


def head_tap(head: keras.Model) -> str:
    """The tap a head reads: 'frames' for a frame-level (batch, frames, channels) input, else 'embedding'."""
    return "frames" if len(head.input.shape) == 3 else "embedding"


def build_speaker_model(
    backbone: keras.Model, features: FeatureConfig = FeatureConfig(), precision: str = "float64", name: str = "speaker_model"
) -> keras.Model:
    """waveform -> L2-normalised embedding, sharing the backbone's weights."""
    check_backbone(backbone)
    fbank = Fbank(**asdict(features), precision=precision, name=FRONT_END)
    return _assemble(fbank, backbone, L2Normalize(name=BASE_EMBEDDING), name=name)


def is_speaker_model(model: keras.Model) -> bool:
    names = {layer.name for layer in model.layers}
    return FRONT_END in names and BACKBONE_NAME in names and BASE_EMBEDDING in names


def require_speaker_model(model: keras.Model, source) -> keras.Model:
    """Refuse any Keras model that is not a speaker model of this toolkit."""
    if not is_speaker_model(model):
        raise CheckpointError(
            f"{source}: not a deep-speaker speaker model (it needs layers '{FRONT_END}', '{BACKBONE_NAME}' and "
            f"'{BASE_EMBEDDING}'); build one with build_speaker_model or convert a legacy checkpoint"
        )
    return model


def front_end(model: keras.Model) -> Fbank:
    return model.get_layer(FRONT_END)


def feature_config_of(model: keras.Model) -> FeatureConfig:
    """The feature recipe a speaker model computes its input with."""
    return front_end(model).feature_config


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_NAME)


def head_of(model: keras.Model) -> keras.Model | None:
    """The refinement head of a fused model (None without one)."""
    if not has_head(model):
        return None
    return next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != BACKBONE_NAME)


def _parts(model: keras.Model, with_head: bool = True) -> dict:
    head = head_of(model) if with_head else None
    return {
        "fbank": front_end(model),
        "backbone": backbone_of(model),
        "ln": model.get_layer(BASE_EMBEDDING),
        "head": head,
        "fusion": model.get_layer(FUSION) if head is not None else None,
    }


def feature_model(model: keras.Model) -> keras.Model:
    """The same model from features (batch, frames, bands) instead of the waveform; shares every weight."""
    return _assemble(**_parts(model), from_features=True, name=f"{model.name}_features")


def base_of(model: keras.Model, from_features: bool = False) -> keras.Model:
    """The base (front end, backbone, `ln`) of a speaker model with or without a head; shares weights."""
    return _assemble(**_parts(model, with_head=False), from_features=from_features, name="base")


def has_head(model: keras.Model) -> bool:
    return any(layer.name == FUSION for layer in model.layers)


def weights_fingerprint(model: keras.Model) -> str:
    """Digest of a model's weight values in its weight order: identifies the exact base a head was trained on."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def model_fingerprint(model: keras.Model) -> str:
    """The model's identity: its weights, its front end (trim aside) and its fusion. Re-saving, copying or
    converting a checkpoint keeps it; any change of what the model computes changes it. Keys calibration
    and the enrolment store."""
    digest = hashlib.sha256(weights_fingerprint(model).encode())
    recipe = {k: v for k, v in front_end(model).get_config().items() if k not in ("name", "trainable", "dtype", "trim")}
    if recipe.get("kind") == "deep_speaker":  # the field came later: our own front end hashes as it always did
        del recipe["kind"]
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    if has_head(model):
        fusion = model.get_layer(FUSION)
        digest.update(f"{fusion.mode}:{fusion.weight}".encode())
    return digest.hexdigest()[:16]


def build_fused(
    model: keras.Model,
    head: keras.Model,
    fusion: str = "head",
    weight: float = 0.5,
    trained: bool = False,
    base_fingerprint: str | None = None,
) -> keras.Model:
    """waveform -> fused embedding: the base of `model`, `head` on its tap (`head_tap`) and the fusion choice.

    `base_fingerprint` records the base weights the head was trained on (default: the base's weights now).
    """
    fingerprint = base_fingerprint or weights_fingerprint(base_of(model))
    layer = EmbeddingFusion(fusion, weight, trained=trained, base_fingerprint=fingerprint, name=FUSION)
    parts = {**_parts(model, with_head=False), "head": head, "fusion": layer}
    return _assemble(**parts, name=f"{model.name}_{head.name}_{fusion}")


def check_fused_head(model: keras.Model, source) -> None:
    """Refuse a fused model whose head was never trained, or was trained on other base weights."""
    fusion = model.get_layer(FUSION)
    if not fusion.trained:
        raise CheckpointError(
            f"{source}: its refinement head was never trained (train it with train_head first)", cli_hint="run `train-head`"
        )
    found = weights_fingerprint(base_of(model))
    if found != fusion.base_fingerprint:
        raise CheckpointError(
            f"{source}: the head was trained on base weights {fusion.base_fingerprint}, but the base in the file is {found}; "
            "retrain the head on this base"
        )
