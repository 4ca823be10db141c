"""Keras 3 layers of the toolkit: keras.ops only (every backend), registered and serialisable."""

from .frontend import Fbank, FeatureSpec
from .fusion import EmbeddingFusion, ScoreFusion
from .margins import CosineLogits
from .normalization import L2Normalize, l2_normalize
from .partials import PartialAverage, PartialWindows
from .pooling import AttentiveStatsPooling, StatsPooling, TemporalAverage
from .tdnn import ChannelSplit, ReflectPadding1D, SqueezeExcitation, tdnn_block

__all__ = [
    "AttentiveStatsPooling",
    "ChannelSplit",
    "CosineLogits",
    "EmbeddingFusion",
    "Fbank",
    "FeatureSpec",
    "L2Normalize",
    "PartialAverage",
    "PartialWindows",
    "ReflectPadding1D",
    "ScoreFusion",
    "SqueezeExcitation",
    "StatsPooling",
    "TemporalAverage",
    "l2_normalize",
    "tdnn_block",
]
