"""Silence trimming in the graph: what `audio.speech_selection` keeps, for exports that take the raw recording.

The toolkit trims on the host (NumPy); a standalone export (`tf.export.export_standalone`) carries the same trim
inside, so a user of ONNX Runtime alone feeds the recording as it is. The reference's trim and the energy VAD are
reproduced sample for sample (thresholds computed in float64 as NumPy's `percentile` does). Resemblyzer's trim is
WebRTC's VAD, a fixed-point detector in C whose noise model adapts frame by frame; no graph operator reproduces it, so
it is refused here rather than approximated.
"""

from __future__ import annotations

import keras
from keras import ops

from ..audio import FRAME_LENGTH, FRAME_STEP
from ..errors import ConfigError

GRAPH_TRIMS = ("reference", "energy", "none")
ENERGY_RANGE_DB = 35.0  # audio.speech_blocks' defaults
ENERGY_CONTEXT_FRAMES = 5


def _percentile_95(values):
    """NumPy's `percentile(values, 95)` (linear interpolation, its `_lerp`) of a 1-D tensor, in float64."""
    ordered = ops.cast(ops.sort(values), "float64")
    count = ops.shape(values)[0]
    position = ops.cast(count - 1, "float64") * 0.95
    below = ops.floor(position)
    lower = ops.cast(below, "int32")
    upper = ops.minimum(lower + 1, count - 1)
    fraction = position - below
    a, b = ops.take(ordered, lower), ops.take(ordered, upper)
    difference = b - a
    return ops.where(fraction >= 0.5, b - difference * (1.0 - fraction), a + difference * fraction)


def _windowed_any(flags, before: int, after: int):
    """Per position i of a 0/1 float vector: whether any flag in [i - before, i + after] is set."""
    padded = ops.concatenate([ops.zeros((before + 1,), flags.dtype), flags, ops.zeros((after,), flags.dtype)])
    running = ops.cumsum(padded)
    count = ops.shape(flags)[0]
    return running[before + after + 1 : before + after + 1 + count] - running[:count] > 0.5


@keras.saving.register_keras_serializable(package="deep_speaker")
class SilenceTrim(keras.layers.Layer):
    """One recording (samples,) -> its speech (1, kept samples) by the trim `method` ('reference', 'energy', 'none'),
    equal to `audio.trim_silence` sample for sample. A recording the toolkit refuses as too short (under 25 ms left)
    comes out shorter than one frame, and the model then gives a non-finite embedding."""

    def __init__(self, method: str = "reference", **kwargs):
        super().__init__(**kwargs)
        if method not in GRAPH_TRIMS:
            raise ConfigError(
                f"trim {method!r} cannot run inside a graph (only {', '.join(GRAPH_TRIMS)}): Resemblyzer's is WebRTC's "
                "fixed-point VAD with a noise model that adapts frame by frame, which no graph operator reproduces"
            )
        self.method = method

    def call(self, waveform):
        waveform = ops.cast(waveform, "float32")
        if self.method == "reference":
            magnitude = ops.abs(waveform)
            loud = ops.cast(ops.cast(magnitude, "float64") > _percentile_95(magnitude), "int32")  # ONNX's ArgMax takes no bool
            count = ops.shape(waveform)[0]
            first = ops.argmax(loud)
            last = count - 1 - ops.argmax(ops.flip(loud, axis=0))
            indices = ops.arange(first, ops.maximum(last, first))  # the reference's end is exclusive
        elif self.method == "energy":
            indices = self._energy_indices(waveform)
        else:
            indices = ops.arange(ops.shape(waveform)[0])
        return ops.expand_dims(ops.take(waveform, indices), 0)

    @staticmethod
    def _energy_indices(waveform):
        """`audio.energy_speech_indices`: 10 ms blocks of 25 ms frames within 35 dB of the loud ones, dilated."""
        count = ops.shape(waveform)[0]
        frames = ops.maximum(1 + (count - FRAME_LENGTH) // FRAME_STEP, 0)
        positions = ops.expand_dims(ops.arange(frames) * FRAME_STEP, 1) + ops.expand_dims(ops.arange(FRAME_LENGTH), 0)
        samples = ops.cast(ops.take(waveform, ops.minimum(positions, ops.maximum(count - 1, 0))), "float64")
        energy_db = 10.0 * ops.log10(ops.mean(samples * samples, axis=1) + 1e-12)
        loud = ops.cast(energy_db > _percentile_95(energy_db) - ENERGY_RANGE_DB, "float32")
        voiced = ops.cast(_windowed_any(loud, ENERGY_CONTEXT_FRAMES, ENERGY_CONTEXT_FRAMES), "float32")
        overlap = -(-FRAME_LENGTH // FRAME_STEP) - 1  # a frame covers its own block and the next two
        extended = ops.concatenate([voiced, ops.zeros((overlap,), "float32")])  # np.convolve's full output
        blocks = _windowed_any(extended, overlap, 0)  # block j: a voiced frame among j - 2 .. j
        per_sample = ops.repeat(blocks, FRAME_STEP)[:count]
        return ops.reshape(ops.where(per_sample)[0], (-1,))

    def compute_output_shape(self, input_shape):
        return (1, None)

    def get_config(self):
        return {**super().get_config(), "method": self.method}
