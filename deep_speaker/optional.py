"""The optional dependencies: which extra of `pip install deep-speaker[...]` brings each, and one clear error
naming that extra when code needs one that is not installed.

`pip install deep-speaker` gives verification, identification, enrolment, evaluation and diarization on ONNX
Runtime. The rest comes with extras (`pyproject.toml`): TensorFlow and Keras for training and the Keras runtime,
the exporter, the HTTP service, the adversarial tools, the PostgreSQL store, Ray and JAX. Whatever imports one of their modules
without it gets `errors.MissingExtraError` (a `ModuleNotFoundError`, so code that probes with try/except ImportError
behaves as before), from the import itself, however deep in a chain it happens.
"""

from __future__ import annotations

import importlib.abc
import sys

from .errors import MissingExtraError

EXTRA_OF = {  # top-level module -> the extra that installs it
    "tensorflow": "train",
    "keras": "train",
    "h5py": "train",
    "tensorboard": "train",
    "tf2onnx": "export",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "swagger_ui_bundle": "serve",
    "pyworld": "adversarial",
    "librosa": "adversarial",
    "psycopg": "postgresql",
    "ray": "cluster",
    "pyarrow": "cluster",
    "jax": "jax",
}


class _MissingExtraFinder(importlib.abc.MetaPathFinder):
    """Last on `sys.meta_path`, so it is asked only about a module no other finder found: for an optional
    dependency's top-level module it raises the error naming the extra; anything else stays Python's business."""

    def find_spec(self, name, path=None, target=None):
        if path is None and name in EXTRA_OF:
            raise MissingExtraError(name, EXTRA_OF[name])
        return None


def install_finder() -> None:
    """Put the finder last on `sys.meta_path` (once per process)."""
    if not any(isinstance(finder, _MissingExtraFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MissingExtraFinder())
