"""Backbones by name. A backbone is one file with a builder decorated by `register_backbone`.

The contract (checked by `build_backbone`): a `keras.Model` from features `(batch, frames, bands)` to a dict
of named taps, `frames` (frame-level output, `(batch, frames', channels)`) and `embedding` (the
utterance-level vector, not normalised). Classifiers are attached by the trainer, heads to a tap, the
front end and the final L2 normalisation by `speaker_model.build_speaker_model`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ..errors import ConfigError

TAPS = ("frames", "embedding")
BACKBONE_NAME = "backbone"  # the name every backbone model takes inside a speaker model
BACKBONES: dict[str, Callable[..., keras.Model]] = {}
MAX_WIDTH = 4.0  # width multiplier: 2048 filters in the ResCNN's last stage, 16 times the published model
MAX_EMBEDDING_DIM = 4096
MAX_FBANKS = 512


def register_backbone(name: str):
    """Decorator: make `builder(num_fbanks, name=..., **options)` buildable as `build_backbone(name, ...)`."""

    def register(builder):
        BACKBONES[name] = builder
        return builder

    return register


def check_backbone(model: keras.Model, source: str = "backbone") -> keras.Model:
    """Raise `ConfigError` unless `model` keeps the backbone contract."""
    outputs = model.output
    if not isinstance(outputs, dict) or set(outputs) != set(TAPS):
        raise ConfigError(f"{source}: a backbone returns a dict with exactly the taps {TAPS}, got {type(outputs).__name__}")
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 3:
        raise ConfigError(f"{source}: a backbone takes one (batch, frames, bands) input")
    if len(outputs["embedding"].shape) != 2 or len(outputs["frames"].shape) != 3:
        raise ConfigError(f"{source}: taps must be frames (batch, frames, channels) and embedding (batch, dim)")
    return model


def build_backbone(name: str, num_fbanks: int = 64, **options) -> keras.Model:
    """Build a registered backbone for `num_fbanks`-band features; unknown names raise with the choices."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(BACKBONES)}")
    width, embedding_dim = options.get("width", 1.0), options.get("embedding_dim", 1)
    if not 0 < width <= MAX_WIDTH:  # NaN fails too
        raise ConfigError(f"model {name!r}: width must be positive and at most {MAX_WIDTH:g}, got {width!r}")
    if not 1 <= embedding_dim <= MAX_EMBEDDING_DIM or not 1 <= num_fbanks <= MAX_FBANKS:
        raise ConfigError(
            f"model {name!r}: embedding_dim {embedding_dim} and {num_fbanks} filterbanks must be 1-{MAX_EMBEDDING_DIM} and 1-{MAX_FBANKS}"
        )
    try:
        model = BACKBONES[name](num_fbanks=num_fbanks, name=BACKBONE_NAME, **options)
    except TypeError as error:
        raise ConfigError(f"model {name!r}: {error}") from error
    return check_backbone(model, f"model {name!r}")
