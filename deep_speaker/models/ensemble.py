"""Ensembles: trained speaker models that share a front end, as one speaker model.

    features -> member_0 (its backbone, `ln` [, head, fusion]) -> unit e_0  \\
             -> member_1 ...                                    -> unit e_1  -> ScoreFusion -> taps["embedding"]

The ensemble is itself a backbone (taps `frames` of the first member, `embedding` the fused vector) inside
an ordinary speaker model, so every command, the encoder, the back ends and export take it unchanged. The
cosine of two ensemble embeddings is the weighted sum of the members' cosines: score fusion of models
with different architectures (e.g. ResCNN and ECAPA-TDNN) in one dot product.
"""

from __future__ import annotations

import keras

from ..errors import ConfigError
from ..layers import ScoreFusion
from .registry import BACKBONE_NAME, check_backbone
from .speaker_model import _assemble, _parts, build_speaker_model, feature_config_of


def build_ensemble(models: list[keras.Model], weights=None, name: str = "ensemble") -> keras.Model:
    """waveform -> fused unit embedding of `models` (score weights `weights`, default equal)."""
    if len(models) < 2:
        raise ConfigError(f"an ensemble needs two or more models, got {len(models)}")
    configs = [feature_config_of(model) for model in models]
    if any(config != configs[0] for config in configs[1:]):
        described = "; ".join(config.describe() for config in configs)
        raise ConfigError(f"ensemble members must compute the same features (one front end for all), got: {described}")
    weights = [1.0] * len(models) if weights is None else list(weights)
    if len(weights) != len(models):
        raise ConfigError(f"{len(models)} models but {len(weights)} weights")
    inputs = keras.Input(shape=(None, configs[0].num_fbanks), name="features")
    outputs = [_assemble(**_parts(model), name=f"member_{index}", as_backbone=True)(inputs) for index, model in enumerate(models)]
    embedding = ScoreFusion(weights, name="score_fusion")([taps["embedding"] for taps in outputs])
    backbone = keras.Model(inputs, {"frames": outputs[0]["frames"], "embedding": embedding}, name=BACKBONE_NAME)
    precision = models[0].get_layer("fbank").precision
    return build_speaker_model(check_backbone(backbone, "ensemble"), configs[0], precision=precision, name=name)
