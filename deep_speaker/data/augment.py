"""Augmentation of training batches (seeded by the batch's generator, so runs reproduce)."""

from __future__ import annotations

import numpy as np


def mask_spans(crops: np.ndarray, rng: np.random.Generator, max_bands: int = 8, max_frames: int = 20) -> None:
    """SpecAugment-style masking in place: per crop (frames, bands), one band of filterbanks and one span of frames set to 0."""
    num_crops, num_frames, num_bands = crops.shape[:3]
    for crop, band_width, band_start, span, span_start in zip(
        crops,
        rng.integers(0, max_bands + 1, num_crops),
        rng.integers(0, max(1, num_bands - max_bands), num_crops),
        rng.integers(0, max_frames + 1, num_crops),
        rng.integers(0, max(1, num_frames - max_frames), num_crops),
    ):
        crop[:, band_start : band_start + band_width] = 0
        crop[span_start : span_start + span] = 0
