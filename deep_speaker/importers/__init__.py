"""Pretrained models from elsewhere: their checkpoint files read without executing code, mapped to our layers (the
original Deep Speaker's Keras 2 files, Resemblyzer's GE2E, SpeechBrain's ECAPA-TDNN and x-vector)."""

from .legacy import load_legacy_checkpoint
from .resemblyzer import import_resemblyzer
from .speechbrain import import_speechbrain
from .torch_checkpoint import read_state_dict, read_torch_checkpoint

# `import-model NAME`: checkpoint -> speaker model (the Keras 2 files load directly, or `convert-checkpoint`)
IMPORTERS = {"resemblyzer": import_resemblyzer, "speechbrain": import_speechbrain}

__all__ = ["IMPORTERS", "import_resemblyzer", "load_legacy_checkpoint", "import_speechbrain", "read_state_dict", "read_torch_checkpoint"]
