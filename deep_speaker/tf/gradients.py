"""Gradients of a verification score with respect to the raw waveform (white-box attacks, adversarial training).

The score is what the `Verifier` compares with its threshold for cosine scoring: the dot product of the encoder's
unit embedding of the waveform with a unit reference embedding. For a score fusion it is the same dot product of
the fused embedding, i.e. each member's cosine weighted by its squared scale. Each member sees the waveform as the
toolkit feeds it - trimmed by the member's own method, recomputed from the current waveform at every call
(`audio.speech_selection`: a gather times a gain) - so the gradient is the pipeline's, end to end.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..audio import FRAME_LENGTH, speech_selection
from ..errors import AudioError, ConfigError


@dataclass
class _Member:
    score: object  # tf.function (waveform, indices, gain, reference part) -> (score part, gradient)
    trim: str
    scale: float
    start: int
    stop: int


_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one traced function per model, reused by every attack


def _member_function(model):
    if model in _FUNCTIONS:
        return _FUNCTIONS[model]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ]
    )
    def score_and_gradient(waveform, indices, gain, reference):
        with tf.GradientTape() as tape:
            tape.watch(waveform)
            embedding = model(tf.gather(waveform, indices)[None] * gain, training=False)[0]
            score = tf.reduce_sum(embedding * reference)
        return score, tf.convert_to_tensor(tape.gradient(score, waveform))  # dense (a gather's gradient is sparse)

    _FUNCTIONS[model] = score_and_gradient
    return score_and_gradient


class ScoreGradient:
    """`oracle(waveform)` -> (score, d score / d waveform) for a `SpeakerEncoder` or `FusedEncoder` (Keras runtime)
    against a fixed `reference` embedding (normalised here)."""

    def __init__(self, encoder, reference: np.ndarray):
        reference = np.asarray(reference, np.float32)
        if reference.shape != (encoder.embedding_dim,):
            raise ConfigError(f"the reference embedding has shape {reference.shape}; the encoder makes ({encoder.embedding_dim},)")
        self.reference = reference / max(float(np.linalg.norm(reference)), 1e-12)
        self.members, start = [], 0
        for member, scale in encoder.parts:  # the one-model encoders, each with its share of the fused embedding
            if member.speaker_model is None:
                raise ConfigError("white-box attacks need the Keras model (runtime='keras'), not an exported one")
            stop = start + member.embedding_dim
            self.members.append(_Member(_member_function(member.speaker_model), member.feature_config.trim, float(scale), start, stop))
            start = stop

    def __call__(self, waveform: np.ndarray) -> tuple[float, np.ndarray]:
        waveform = np.asarray(waveform, np.float32)
        score, gradient = 0.0, np.zeros_like(waveform)
        for member in self.members:
            indices, gain = speech_selection(waveform, member.trim)
            if indices.size < FRAME_LENGTH:
                raise AudioError(
                    f"only {indices.size} samples of speech after '{member.trim}' trimming; at least {FRAME_LENGTH} are needed"
                )
            reference = member.scale * self.reference[member.start : member.stop]
            part, part_gradient = member.score(waveform, indices.astype(np.int32), np.float32(gain), reference)
            score += float(part)
            gradient += part_gradient.numpy()
        return score, gradient
