"""Pretrained models from other toolkits: their checkpoint files read without executing code, mapped to our layers."""

from .resemblyzer import import_resemblyzer
from .torch_checkpoint import read_torch_checkpoint

IMPORTERS = {"resemblyzer": import_resemblyzer}  # `import-model NAME`: checkpoint path -> speaker model

__all__ = ["IMPORTERS", "import_resemblyzer", "read_torch_checkpoint"]
