"""Pretrained models from other toolkits: their checkpoint files read without executing code, mapped to our layers."""

from .torch_checkpoint import read_torch_checkpoint

__all__ = ["read_torch_checkpoint"]
