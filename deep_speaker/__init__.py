"""deep-speaker: speaker recognition with Deep Speaker (ResCNN) in Keras 3.

Light modules (audio, features, data) import without TensorFlow; the model API (`load_model`,
`SpeakerEncoder`, `load_encoder`, `Verifier`, `build_backbone`, ...) loads Keras on first use.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .optional import install_finder  # noqa: E402

install_finder()  # a missing optional dependency is reported with the extra that brings it

__version__ = "0.2.0"

_LAZY = {
    "load_model": "model_files",
    "save_model": "checkpoints",
    "SpeakerEncoder": "embedding",
    "FusedEncoder": "score_fusion",
    "ExportedEncoder": "embedding",
    "load_encoder": "assembly",
    "SpeakerRegistry": "enrol",
    "Verifier": "verification",
    "build_backbone": "models",
    "build_speaker_model": "models",
    "register_backbone": "models",
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'deep_speaker' has no attribute {name!r}")


__all__ = [*_LAZY, "__version__"]
