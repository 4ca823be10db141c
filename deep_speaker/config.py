"""Training recipes: dataclasses whose defaults are the reference's, overridable from YAML and the CLI.

A YAML recipe has the same keys as the dataclass; an unknown key is an error (a typo must not be
silently ignored). Precedence: dataclass defaults < YAML file < command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from .errors import DeepSpeakerError


class ConfigError(DeepSpeakerError):
    """A recipe file or option is invalid."""


@dataclass(frozen=True)
class ModelConfig:
    """ResCNN shape. width 1.0 is the published model; smaller widths train on CPU."""

    width: float = 1.0
    embedding_dim: int = 512


@dataclass(frozen=True)
class TrainingConfig(ModelConfig):
    """What every training phase has: 160-frame crops in batches of 96, a per-speaker 80/20 split."""

    batch_size: int = 96
    num_frames: int = 160
    epochs: int = 1000
    steps_per_epoch: int = 100
    validation_fraction: float = 0.2
    early_stopping_patience: int = 20
    seed: int = 123


@dataclass(frozen=True)
class SoftmaxConfig(TrainingConfig):
    """Softmax pre-training (reference: Adam, early stopping after 20 epochs, LR halved after 10, dropout 0.5).

    `loss: amsoftmax` replaces the reference's softmax layer by additive-margin softmax on cosine logits
    (`margin`, `scale`), which separates unseen speakers better when there are few training speakers.
    """

    learning_rate: float = 0.001
    reduce_lr_patience: int = 10
    reduce_lr_factor: float = 0.5
    dropout: float = 0.5
    loss: str = "softmax"  # softmax (reference) | amsoftmax
    margin: float = 0.2
    scale: float = 30.0
    spec_augment: bool = False  # zero one random band of up to 8 filterbanks and one span of up to 20 frames per crop


@dataclass(frozen=True)
class TripletConfig(TrainingConfig):
    """Triplet training (reference: SGD, margin 0.1, batch 96 = 32 anchors + 32 positives + 32 negatives)."""

    learning_rate: float = 0.01
    margin: float = 0.1
    negative_candidates: int = 32  # random utterances of other speakers per anchor; the closest is its negative


def load_recipe(config_class, path: str | Path | None = None, **overrides):
    """A `config_class` from defaults, then the YAML file at `path`, then non-None `overrides`."""
    known = {f.name for f in fields(config_class)}
    values = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read recipe ({error})") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of option: value")
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown option(s) {unknown}; known: {sorted(known)}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {config_class.__name__}")
    return replace(config_class(), **values)


@dataclass(frozen=True)
class HeadConfig:
    """Refinement head training on a frozen base, then optional joint fine-tuning at a lower rate."""

    head: str = "dense"  # dense | tdnn
    loss: str = "amsoftmax"  # amsoftmax | triplet
    fusion: str = "score"  # head | concat | score: which fused model `train-head` returns
    embedding_dim: int = 128
    hidden_units: int = 512
    dropout: float = 0.2
    tdnn_channels: int = 512
    margin: float = 0.2  # AM-softmax additive margin (cosine); for --loss triplet the triplet margin
    scale: float = 30.0
    batch_size: int = 96
    num_frames: int = 160
    crops_per_utterance: int = 8  # frozen base: inputs precomputed for this many random crops of each utterance
    learning_rate: float = 0.001
    epochs: int = 30
    steps_per_epoch: int = 100
    early_stopping_patience: int = 8
    finetune_epochs: int = 0
    finetune_learning_rate: float = 0.0001
    negative_candidates: int = 16
    validation_fraction: float = 0.2
    seed: int = 123
