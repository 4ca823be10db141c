"""Scores and what they mean: back ends that compare embeddings, metrics, calibrated operating points."""

from .backends import SCORERS, CosineScorer, Scorer, build_scorer, load_scorer, save_scorer
from .metrics import all_pairs_eer, compute_eer, compute_min_dcf

__all__ = [
    "SCORERS",
    "CosineScorer",
    "Scorer",
    "all_pairs_eer",
    "build_scorer",
    "compute_eer",
    "compute_min_dcf",
    "load_scorer",
    "save_scorer",
]
