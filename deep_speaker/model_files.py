"""Speaker-model files: `load_model` opens any checkpoint a user may have and returns a usable speaker model.

- Keras 2 `.h5` / `.h5.gz` of the original Deep Speaker (`importers.legacy`);
- Keras 3 `.keras` written by this toolkit (speaker models; version 0.1 feature-in models are rebuilt).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras

from .checkpoints import load_keras_file
from .errors import CheckpointError
from .features import FeatureConfig
from .importers.legacy import from_version_0_1, load_legacy_checkpoint
from .models.speaker_model import check_fused_head, feature_config_of, has_head, require_speaker_model

NATIVE_SUFFIXES = (".keras",)


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
        model = from_version_0_1(model, path)
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
            cli_hint="rebuild the cache with matching `build-features --energies/--normalisation`",
        )
