"""Pretrained models from other toolkits: their checkpoint files read without executing code, mapped to our layers."""

from .resemblyzer import import_resemblyzer
from .speechbrain import import_speechbrain
from .torch_checkpoint import read_state_dict, read_torch_checkpoint

IMPORTERS = {"resemblyzer": import_resemblyzer, "speechbrain": import_speechbrain}  # `import-model NAME`: checkpoint -> speaker model

__all__ = ["IMPORTERS", "import_resemblyzer", "import_speechbrain", "read_state_dict", "read_torch_checkpoint"]
