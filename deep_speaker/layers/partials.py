"""Partial windows: an utterance as overlapping fixed-length windows, embedded one by one and averaged (GE2E)."""

from __future__ import annotations

import keras
from keras import ops

from ..frontends.spectra import size_maximum


@keras.saving.register_keras_serializable(package="deep_speaker")
class PartialWindows(keras.layers.Layer):
    """(batch, frames, channels) -> (batch * windows, length, channels): every full window starting at 0, step,
    2 step, ...; an input shorter than one window is zero-padded to one. Resemblyzer's partial utterances
    (length 160, step 77 frames) when its front end has padded the waveform to the last window's end."""

    def __init__(self, length: int = 160, step: int = 77, **kwargs):
        super().__init__(**kwargs)
        self.length, self.step = int(length), int(step)

    def call(self, inputs):
        frames = ops.shape(inputs)[1]
        padding = size_maximum(self.length - frames, 0)
        inputs = ops.pad(inputs, [[0, 0], [0, padding], [0, 0]])
        count = (frames + padding - self.length) // self.step + 1
        starts = ops.arange(count) * self.step
        windows = ops.take(inputs, starts[:, None] + ops.arange(self.length)[None, :], axis=1)  # (batch, n, length, ch)
        return ops.reshape(windows, (-1, self.length, ops.shape(inputs)[2]))

    def compute_output_shape(self, input_shape):
        return (None, self.length, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "length": self.length, "step": self.step}


@keras.saving.register_keras_serializable(package="deep_speaker")
class PartialAverage(keras.layers.Layer):
    """[per-window vectors (batch * windows, ...), the windowed input (batch, ...)] -> (batch, windows, ...) ->
    the mean over windows, or with `keep_windows` the windows' rows concatenated along time."""

    def __init__(self, keep_windows: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keep_windows = bool(keep_windows)

    def call(self, inputs):
        per_window, source = inputs
        batch = ops.shape(source)[0]
        if self.keep_windows:  # (batch * n, length, ch) -> (batch, n * length, ch)
            return ops.reshape(per_window, (batch, -1, ops.shape(per_window)[-1]))
        return ops.mean(ops.reshape(per_window, (batch, -1, ops.shape(per_window)[-1])), axis=1)

    def compute_output_shape(self, input_shape):
        per_window, source = input_shape
        return (source[0], None, per_window[-1]) if self.keep_windows else (source[0], per_window[-1])

    def get_config(self):
        return {**super().get_config(), "keep_windows": self.keep_windows}
