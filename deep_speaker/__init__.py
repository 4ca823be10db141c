"""deep-speaker: speaker recognition with Deep Speaker (ResCNN) in Keras 3.

Light modules (audio, features, datasets, cache) import without TensorFlow; the model API
(`load_model`, `SpeakerEncoder`, `build_rescnn`) loads Keras on first use.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_LAZY = {
    "load_model": "checkpoints",
    "save_model": "checkpoints",
    "SpeakerEncoder": "embedding",
    "SpeakerRegistry": "enrol",
    "build_rescnn": "models",
    "build_model": "models",
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'deep_speaker' has no attribute {name!r}")


__all__ = [*_LAZY, "__version__"]
