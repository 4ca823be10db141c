"""Front ends, one module per toolkit's (its NumPy oracle, its graph operations, its description), found by kind.

A new toolkit's front end is one module with a `FrontEnd` subclass and one line below.
"""

from ..errors import ConfigError
from .base import FrontEnd
from .deep_speaker import DeepSpeakerFbank
from .resemblyzer import ResemblyzerMel
from .speechbrain import SpeechBrainFbank

FRONT_ENDS: dict[str, FrontEnd] = {front.kind: front for front in (DeepSpeakerFbank(), ResemblyzerMel(), SpeechBrainFbank())}


def front_end(kind: str) -> FrontEnd:
    """The front end of `kind` (a `FeatureConfig.kind`)."""
    if kind not in FRONT_ENDS:
        raise ConfigError(f"unknown front end {kind!r}; choose from {tuple(FRONT_ENDS)}")
    return FRONT_ENDS[kind]


__all__ = ["FRONT_ENDS", "FrontEnd", "front_end"]
