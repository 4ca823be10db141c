"""Corpora and cached features: discovery of utterances and speakers, the feature cache, the training split."""
