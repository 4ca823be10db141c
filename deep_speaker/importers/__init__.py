"""Pretrained models from elsewhere: their checkpoint files read without executing code, mapped to our layers (the
original Deep Speaker's Keras 2 files, Resemblyzer's GE2E, SpeechBrain's ECAPA-TDNN and x-vector).

This face is light (the command line reads `IMPORTERS` to parse): each importer's module, which needs Keras, is
imported when it is used."""

from __future__ import annotations

import importlib

# `import-model KIND`: KIND -> (module, function, what checkpoint it reads); the Keras 2 files load directly, or
# through `convert-checkpoint`
IMPORTERS = {
    "resemblyzer": ("resemblyzer", "import_resemblyzer", "the GE2E encoder's pretrained.pt"),
    "speechbrain": ("speechbrain", "import_speechbrain", "an ECAPA-TDNN or x-vector embedding_model.ckpt"),
}


def import_model(kind: str, source):
    """The speaker model (waveform in) of the checkpoint `source` of the toolkit `kind` (a key of `IMPORTERS`)."""
    module, function, _ = IMPORTERS[kind]
    return getattr(importlib.import_module(f".{module}", __name__), function)(source)


_NAMES = {
    "import_resemblyzer": "resemblyzer",
    "import_speechbrain": "speechbrain",
    "load_legacy_checkpoint": "legacy",
    "read_state_dict": "torch_checkpoint",
    "read_torch_checkpoint": "torch_checkpoint",
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["IMPORTERS", "import_model", *_NAMES]
