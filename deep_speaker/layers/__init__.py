"""Keras 3 layers of the toolkit: keras.ops only (every backend), registered and serialisable."""

from .frontend import Fbank, FeatureSpec
from .fusion import EmbeddingFusion
from .margins import CosineLogits
from .normalization import L2Normalize, l2_normalize
from .pooling import StatsPooling, TemporalAverage

__all__ = ["CosineLogits", "EmbeddingFusion", "Fbank", "FeatureSpec", "L2Normalize", "StatsPooling", "TemporalAverage", "l2_normalize"]
