"""AdvGAN for speaker verification (after Xiao et al. 2018): a generator that turns (recording, target speaker's
embedding) into a bounded perturbation in one forward pass, and the discriminator that keeps the perturbed
recording close to real speech while the generator learns. Trained in `tf/advgan.py`; used by `attack
--method advgan`.

Both work on the raw waveform cut into 10 ms frames (160 samples): convolutions over frames, the generator's
output reshaped back to samples and scaled to the SNR it was built for (`SnrScale`: the perturbation's energy
exactly 10^(-snr/10) of the recording's), so every output is within the bound by construction.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

FRAME = 160  # samples per frame (10 ms at 16 kHz); waveforms are padded to a multiple of it


@keras.saving.register_keras_serializable(package="deep_speaker")
class WaveformFrames(layers.Layer):
    """(batch, samples) -> (batch, samples / frame, frame); samples must be a multiple of `frame`."""

    def __init__(self, frame: int = FRAME, **kwargs):
        super().__init__(**kwargs)
        self.frame = frame

    def call(self, waveform):
        return ops.reshape(waveform, (ops.shape(waveform)[0], -1, self.frame))

    def compute_output_shape(self, input_shape):  # stated: JAX cannot infer a reshape of two unknown sizes
        batch, samples = input_shape
        return (batch, None if samples is None else samples // self.frame, self.frame)

    def get_config(self):
        return {**super().get_config(), "frame": self.frame}


@keras.saving.register_keras_serializable(package="deep_speaker")
class FramesToWaveform(layers.Layer):
    """(batch, frames, frame) -> (batch, frames x frame)."""

    def call(self, frames):
        return ops.reshape(frames, (ops.shape(frames)[0], -1))

    def compute_output_shape(self, input_shape):
        batch, frames, frame = input_shape
        return (batch, None if frames is None else frames * frame)


@keras.saving.register_keras_serializable(package="deep_speaker")
class TargetConditioning(layers.Layer):
    """Frame features plus a per-example vector (the projected target embedding) at every frame."""

    def call(self, inputs):
        features, condition = inputs
        return features + condition[:, None, :]


@keras.saving.register_keras_serializable(package="deep_speaker")
class SnrScale(layers.Layer):
    """[direction, clean] -> the direction scaled to `snr_db` below the clean recording (per example)."""

    def __init__(self, snr_db: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self.snr_db = float(snr_db)

    def call(self, inputs):
        direction, clean = inputs
        signal = ops.sqrt(ops.sum(ops.square(clean), axis=-1, keepdims=True))
        norm = ops.sqrt(ops.sum(ops.square(direction), axis=-1, keepdims=True)) + 1e-12
        return direction * signal / (norm * 10.0 ** (self.snr_db / 20.0))

    def get_config(self):
        return {**super().get_config(), "snr_db": self.snr_db}


def build_perturbation_generator(
    embedding_dim: int, snr_db: float = 30.0, channels: int = 64, depth: int = 4, name: str = "advgan_generator"
) -> keras.Model:
    """[waveform (batch, samples), target embedding (batch, dim)] -> perturbation (batch, samples) at `snr_db`:
    dilated convolutions over frames (receptive field about 0.6 s), the target injected before each."""
    waveform = keras.Input((None,), name="waveform")
    target = keras.Input((embedding_dim,), name="target")
    hidden = layers.Conv1D(channels, 3, padding="same", activation="relu", name="frames_in")(WaveformFrames(name="frames")(waveform))
    for level in range(depth):
        condition = layers.Dense(channels, name=f"target_{level}")(target)
        hidden = TargetConditioning(name=f"condition_{level}")([hidden, condition])
        hidden = layers.Conv1D(channels, 3, padding="same", dilation_rate=2**level, activation="relu", name=f"conv_{level}")(hidden)
    direction = layers.Conv1D(FRAME, 1, activation="tanh", name="frames_out")(hidden)
    perturbation = SnrScale(snr_db, name="snr")([FramesToWaveform(name="samples")(direction), waveform])
    return keras.Model([waveform, target], perturbation, name=name)


def build_waveform_discriminator(channels: int = 32, name: str = "advgan_discriminator") -> keras.Model:
    """waveform (batch, samples) -> logit of 'real recording' (strided convolutions over frames, averaged)."""
    waveform = keras.Input((None,), name="waveform")
    hidden = WaveformFrames(name="frames")(waveform)
    for level in range(3):
        hidden = layers.Conv1D(channels * 2**level, 3, strides=2, padding="same", name=f"conv_{level}")(hidden)
        hidden = layers.LeakyReLU(0.2, name=f"leaky_{level}")(hidden)
    pooled = layers.GlobalAveragePooling1D(name="average")(hidden)
    return keras.Model(waveform, layers.Dense(1, name="real")(pooled), name=name)


def load_generator(path) -> keras.Model:
    """A generator saved by `train-advgan`; any other file is refused with an error naming it."""
    from ..checkpoints import load_keras_file
    from ..errors import CheckpointError

    model = load_keras_file(Path(path))
    if not any(isinstance(layer, SnrScale) for layer in model.layers) or len(model.inputs) != 2:
        raise CheckpointError(f"{path}: not an AdvGAN generator (train-advgan makes one)")
    return model


def snr_of(generator: keras.Model) -> float:
    """The SNR (dB) a generator's perturbations are scaled to."""
    return generator.get_layer("snr").snr_db


def pad_to_frames(waveform: np.ndarray) -> np.ndarray:
    """`waveform` padded with zeros to a whole number of frames."""
    return np.pad(waveform, (0, (-waveform.size) % FRAME))


def perturb(generator: keras.Model, waveform: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The generator's perturbation of one recording toward `target`, as the recording's length."""
    unit = np.asarray(target, np.float32) / max(float(np.linalg.norm(target)), 1e-12)
    padded = pad_to_frames(np.asarray(waveform, np.float32))
    delta = keras.ops.convert_to_numpy(generator([padded[None], unit[None]], training=False))[0]
    return delta[: waveform.size]
