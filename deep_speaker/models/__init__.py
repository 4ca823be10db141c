"""Speaker-embedding models: backbones built by name, heads, and the speaker model that joins them to a front end."""

from . import ecapa_tdnn, ge2e, rescnn, xvector  # noqa: F401  (each registers its backbone)
from .registry import BACKBONES, build_backbone, register_backbone
from .speaker_model import build_speaker_model, feature_config_of, feature_model, model_fingerprint

__all__ = [
    "BACKBONES",
    "build_backbone",
    "build_speaker_model",
    "feature_config_of",
    "feature_model",
    "model_fingerprint",
    "register_backbone",
]
