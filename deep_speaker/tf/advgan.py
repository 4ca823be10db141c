"""AdvGAN training against a frozen verifier (generator and discriminator: `models/advgan.py`).

Each step takes `batch` crops of training recordings and, for each, a target speaker other than its own (the
embedding of one of the target's recordings). The generator's loss is -score(x + G(x, target), target) - the
verifier's own cosine, its gradient taken through the whole pipeline (`ScoreGradient`: trimming, front end,
every member of a fusion) - plus `gan_weight` x the discriminator's "fake" loss on x + G(x, target); the
discriminator learns real recordings against perturbed ones. The run folder keeps a TensorFlow checkpoint
(models, optimisers, step) every `save_every` steps: an interrupted run resumes there. The generator is saved
as a `.keras` file (atomically) at the end, with what it was trained against in `<name>.json` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ..audio import crop_waveform, read_audio
from ..checkpoints import check_save_path, save_model
from ..data.corpus import recordings_by_speaker
from ..fileio import atomic_write_bytes
from ..models.advgan import FRAME, build_perturbation_generator, build_waveform_discriminator
from .gradients import ScoreGradient
from .resume import resumable_steps


def train_advgan(
    encoder,
    audio_dir,
    out,
    run_dir,
    steps: int = 300,
    batch: int = 8,
    snr_db: float = 30.0,
    seconds: float = 3.0,
    per_speaker: int = 4,
    gan_weight: float = 0.01,
    learning_rate: float = 1e-3,
    save_every: int = 25,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train a perturbation generator against `encoder` (a `SpeakerEncoder` or `FusedEncoder`, Keras runtime) on
    `per_speaker` recordings of each speaker of `audio_dir` (training speakers, never the evaluation ones)."""
    out = check_save_path(out)  # a name the model cannot be saved under is refused now, not after training
    by_speaker = recordings_by_speaker(audio_dir, 2, "AdvGAN (targets other than the source's speaker)")
    paths = [(speaker, path) for speaker, files in by_speaker.items() for path in files[:per_speaker]]
    speakers = np.array([speaker for speaker, _ in paths])
    waveforms = [read_audio(path) for _, path in tqdm(paths, desc="recordings", disable=not progress)]
    targets = encoder.embed_many([path for _, path in paths], progress=progress).astype(np.float32)
    targets /= np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    length = int(round(seconds * 16000 / FRAME)) * FRAME

    keras.utils.set_random_seed(seed)
    generator = build_perturbation_generator(targets.shape[1], snr_db)
    discriminator = build_waveform_discriminator()
    generator_optimiser, discriminator_optimiser = keras.optimizers.Adam(learning_rate), keras.optimizers.Adam(learning_rate)
    generator_optimiser.build(generator.trainable_variables)
    discriminator_optimiser.build(discriminator.trainable_variables)
    step, manager = resumable_steps(
        run_dir, generator=generator, discriminator=discriminator, g=generator_optimiser, d=discriminator_optimiser
    )
    fake_loss = keras.losses.BinaryCrossentropy(from_logits=True)

    bar = tqdm(total=steps, initial=int(step.numpy()), desc="advgan", disable=not progress)
    while int(step.numpy()) < steps:
        rng = np.random.default_rng([seed, int(step.numpy())])
        sources = rng.choice(len(paths), batch)
        chosen = [int(rng.choice(np.flatnonzero(speakers != speakers[s]))) for s in sources]
        clean = tf.constant(np.stack([crop_waveform(waveforms[s], length, rng) for s in sources]))
        target = tf.constant(targets[chosen])

        with tf.GradientTape() as tape:
            adversarial = tf.clip_by_value(clean + generator([clean, target], training=True), -1.0, 1.0)
            real_logits, fake_logits = discriminator(clean, training=True), discriminator(adversarial, training=True)
            discriminator_loss = fake_loss(tf.ones_like(real_logits), real_logits) + fake_loss(tf.zeros_like(fake_logits), fake_logits)
        discriminator_optimiser.apply(
            tape.gradient(discriminator_loss, discriminator.trainable_variables), discriminator.trainable_variables
        )

        with tf.GradientTape() as tape:
            adversarial = tf.clip_by_value(clean + generator([clean, target], training=True), -1.0, 1.0)
            fake_logits = discriminator(adversarial, training=False)
            realism = fake_loss(tf.ones_like(fake_logits), fake_logits)
            realism_loss = gan_weight * realism
        scores, score_gradients = zip(*(ScoreGradient(encoder, t)(a) for t, a in zip(targets[chosen], adversarial.numpy())))
        # d(-mean score)/d adversarial from the verifier, chained through the generator by the tape
        upstream = -np.stack(score_gradients).astype(np.float32) / batch
        gradients = tape.gradient(
            [adversarial, realism_loss], generator.trainable_variables, output_gradients=[tf.constant(upstream), tf.constant(1.0)]
        )
        generator_optimiser.apply(gradients, generator.trainable_variables)
        step.assign_add(1)
        bar.update(1)
        bar.set_postfix(score=f"{np.mean(scores):.3f}", realism=f"{float(realism):.2f}")
        if int(step.numpy()) % save_every == 0 or int(step.numpy()) == steps:
            manager.save()
    bar.close()
    save_model(generator, out)
    record = {
        "verifier": encoder.fingerprint,
        "snr_db": snr_db,
        "steps": steps,
        "batch": batch,
        "recordings": len(paths),
        "audio_dir": str(audio_dir),
    }
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return out
