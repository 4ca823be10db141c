"""AGAIN-VC training (the model: `models/again_vc.py`): self-reconstruction with an L1 loss, as the original.

Each step draws `batch` random segments of `segment_frames` log-mel frames from the training speakers' recordings
and reconstructs each from its own content and the statistics of the same segment with its halves swapped (so the
statistics carry no timing). The last `validation_fraction` of each speaker's recordings are held out; their
reconstruction L1 (fixed segments) is measured at every save, so a recipe is chosen on training speakers only.
Adam with AMSGrad, global gradient norm clipped at 3 (the original's settings). The run folder keeps a TensorFlow
checkpoint (model, optimiser, step) every `save_every` steps, resumed after an interruption; the converter is
saved as a `.keras` file (atomically) at the end, with its training record in `<name>.json` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ..adversarial.conversion import MEL, log_mel
from ..audio import read_audio
from ..checkpoints import check_save_path, save_model
from ..data.corpus import recordings_by_speaker
from ..data.split import held_out_count
from ..errors import DatasetError
from ..features import crop_or_pad
from ..fileio import atomic_write_bytes
from ..models.again_vc import build_again_vc
from .resume import resumable_steps


def _with_halves_swapped(segments: np.ndarray) -> np.ndarray:
    half = segments.shape[1] // 2
    return np.concatenate([segments[:, half:], segments[:, :half]], axis=1)


def _spectrograms(paths, frames: int, progress: bool, what: str) -> list[np.ndarray]:
    mels = [log_mel(read_audio(path)) for path in tqdm(paths, desc=what, disable=not progress, unit="file")]
    return [mel for mel in mels if mel.shape[0] >= frames]


def train_again(
    audio_dir,
    out,
    run_dir,
    steps: int = 5000,
    batch: int = 32,
    segment_frames: int = 128,
    channels: int = 128,
    blocks: int = 6,
    content_channels: int = 4,
    alpha: float = 0.1,
    learning_rate: float = 5e-4,
    validation_fraction: float = 0.1,
    save_every: int = 250,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train an AGAIN-VC converter on the recordings of `audio_dir` (training speakers, never evaluation ones)."""
    out = check_save_path(out)  # a name the model cannot be saved under is refused now, not after training
    by_speaker = recordings_by_speaker(audio_dir, 2, "AGAIN-VC training (many voices)")
    held_out = {speaker: held_out_count(len(files), validation_fraction) for speaker, files in by_speaker.items()}
    training = _spectrograms(
        [p for s, files in by_speaker.items() for p in files[: len(files) - held_out[s]]], segment_frames, progress, "training recordings"
    )
    validation = _spectrograms(
        [p for s, files in by_speaker.items() for p in files[len(files) - held_out[s] :]], segment_frames, progress, "validation recordings"
    )
    if not training:
        raise DatasetError(
            f"{audio_dir}: no training recording is as long as a segment ({segment_frames} frames, {segment_frames * MEL['hop_length'] / 16000:.1f} s)"
        )
    fixed = np.random.default_rng(seed)
    validation_segments = np.stack([crop_or_pad(mel, segment_frames, fixed) for mel in validation]) if validation else None

    keras.utils.set_random_seed(seed)
    converter = build_again_vc(MEL["n_mels"], channels, content_channels, blocks, alpha)
    optimiser = keras.optimizers.Adam(learning_rate, amsgrad=True, global_clipnorm=3.0)
    optimiser.build(converter.trainable_variables)
    step, manager = resumable_steps(run_dir, converter=converter, optimiser=optimiser)

    @tf.function(reduce_retracing=True)
    def train_step(segments, conditions):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(converter([segments, conditions], training=True) - segments))
        optimiser.apply(tape.gradient(loss, converter.trainable_variables), converter.trainable_variables)
        return loss

    def validation_l1() -> float | None:
        if validation_segments is None:
            return None
        rebuilt = converter.predict([validation_segments, _with_halves_swapped(validation_segments)], batch_size=batch, verbose=0)
        return float(np.mean(np.abs(rebuilt - validation_segments)))

    val_l1 = None
    bar = tqdm(total=steps, initial=int(step.numpy()), desc="again-vc", disable=not progress)
    while int(step.numpy()) < steps:
        rng = np.random.default_rng([seed, int(step.numpy())])
        segments = np.stack([crop_or_pad(training[i], segment_frames, rng) for i in rng.choice(len(training), batch)])
        loss = float(train_step(tf.constant(segments), tf.constant(_with_halves_swapped(segments))))
        step.assign_add(1)
        bar.update(1)
        if int(step.numpy()) % save_every == 0 or int(step.numpy()) == steps:
            manager.save()
            val_l1 = validation_l1()
        bar.set_postfix(l1=f"{loss:.3f}", val_l1="-" if val_l1 is None else f"{val_l1:.3f}")
    bar.close()
    save_model(converter, out)
    record = {
        "steps": steps,
        "batch": batch,
        "segment_frames": segment_frames,
        "channels": channels,
        "blocks": blocks,
        "content_channels": content_channels,
        "alpha": alpha,
        "mel": MEL,
        "training_recordings": len(training),
        "validation_recordings": len(validation),
        "validation_l1": validation_l1(),
        "audio_dir": str(audio_dir),
    }
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return out
