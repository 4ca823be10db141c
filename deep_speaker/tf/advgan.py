"""AdvGAN training against a frozen verifier (generator and discriminator: `models/advgan.py`), phase `advgan` of
the one driver (`tf/train.fit`: resume, logs, best model, early stopping).

Each step takes `batch_size` crops of training recordings and, for each, a target speaker other than its own (the
embedding of one of the target's recordings). The discriminator learns real recordings against perturbed ones;
the generator's loss is -score(x + G(x, target), target) - the verifier's own cosine, its gradient taken through
the whole pipeline (`ScoreGradient`: trimming, front end, every member of a fusion) - plus `gan_weight` x the
discriminator's "fake" loss on x + G(x, target). The best epoch is the one whose generator raises the targets'
scores most on fixed crops (`val_score`); `best.keras` is that generator, and `verifier.json` beside it says what it
was trained against.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from tqdm import tqdm

from ..audio import SAMPLE_RATE, read_audio
from ..config import Recipe, validate
from ..data.corpus import recordings_by_speaker
from ..data.crops import TargetedCrops
from ..fileio import atomic_write_bytes
from ..models.advgan import FRAME, build_perturbation_generator, build_waveform_discriminator
from .distribute import is_chief
from .gradients import ScoreGradient
from .train import Phase, fit, optimizer_of, rebuilt, reduce_lr_on_plateau


class AdvGANTrainer(keras.Model):
    """The generator and its discriminator as one model the driver trains: `train_step` plays one round of each
    (eagerly: the verifier's score gradient is computed outside the graph), `test_step` measures the verifier's
    mean score for the targets. The generator's optimiser is the model's own (the recipe's); the discriminator's is
    Adam at the same rate."""

    def __init__(self, generator, discriminator, encoder, gan_weight: float, learning_rate: float, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.discriminator, self.encoder, self.gan_weight = generator, discriminator, encoder, gan_weight
        self.discriminator_optimizer = keras.optimizers.Adam(learning_rate)
        self.fake_loss = keras.losses.BinaryCrossentropy(from_logits=True)
        self.trackers = {name: keras.metrics.Mean(name) for name in ("score", "realism", "discriminator_loss")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def get_config(self):  # saved for resuming only: `rebuilt` makes the trainer again around the verifier and fills it
        return {"name": self.name, "trainable": self.trainable}

    def optimised(self) -> list:
        return [
            (self.optimizer, self.generator.trainable_variables),
            (self.discriminator_optimizer, self.discriminator.trainable_variables),
        ]

    def call(self, inputs, training=False):
        clean, target = inputs
        return ops.clip(clean + self.generator([clean, target], training=training), -1.0, 1.0)

    def _scores(self, adversarial, target) -> tuple[np.ndarray, np.ndarray]:
        scores, gradients = zip(*(ScoreGradient(self.encoder, t)(a) for t, a in zip(np.asarray(target), np.asarray(adversarial))))
        return np.array(scores), np.stack(gradients).astype(np.float32)

    def train_step(self, data):
        clean, target = data
        with tf.GradientTape() as tape:
            adversarial = self([clean, target], training=True)
            real, fake = self.discriminator(clean, training=True), self.discriminator(adversarial, training=True)
            discriminator_loss = self.fake_loss(tf.ones_like(real), real) + self.fake_loss(tf.zeros_like(fake), fake)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(discriminator_loss, variables), variables)

        with tf.GradientTape() as tape:
            adversarial = self([clean, target], training=True)
            fake = self.discriminator(adversarial, training=False)
            realism = self.fake_loss(tf.ones_like(fake), fake)
            realism_loss = self.gan_weight * realism
        scores, score_gradients = self._scores(adversarial, target)
        # d(-mean score)/d adversarial from the verifier, chained through the generator by the tape
        upstream = tf.constant(-score_gradients / len(scores))
        variables = self.generator.trainable_variables
        gradients = tape.gradient([adversarial, realism_loss], variables, output_gradients=[upstream, tf.constant(1.0)])
        self.optimizer.apply(gradients, variables)
        for name, value in (("score", np.mean(scores)), ("realism", realism), ("discriminator_loss", discriminator_loss)):
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        clean, target = data
        scores, _ = self._scores(self([clean, target]), target)
        self.trackers["score"].update_state(np.mean(scores), sample_weight=len(scores))
        return {"score": self.trackers["score"].result()}


def train_advgan(working_dir, audio_dir, encoder, recipe: Recipe, progress: bool = True, run_name: str = "advgan") -> Path:
    """Train a perturbation generator against `encoder` (a `SpeakerEncoder` or `FusedEncoder`, Keras runtime) on
    `per_speaker` recordings of each speaker of `audio_dir` (training speakers, never the evaluation ones); returns
    the run's best.keras (the generator)."""
    validate(recipe)
    options, run = recipe.advgan, recipe.run
    by_speaker = recordings_by_speaker(audio_dir, 2, "AdvGAN (targets other than the source's speaker)")
    paths = [(speaker, path) for speaker, files in by_speaker.items() for path in files[: options.per_speaker]]
    speakers = np.array([speaker for speaker, _ in paths])
    waveforms = [read_audio(path) for _, path in tqdm(paths, desc="recordings", disable=not progress)]
    targets = encoder.embed_many([path for _, path in paths], progress=progress).astype(np.float32)
    targets /= np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    length = int(round(options.seconds * SAMPLE_RATE / FRAME)) * FRAME
    run_dir = Path(working_dir) / run_name
    validation = TargetedCrops(waveforms, speakers, targets, 2 * run.batch_size, length, 1, run.seed + 1)[0]

    def build(state):
        trainer = AdvGANTrainer(
            build_perturbation_generator(targets.shape[1], options.snr_db),
            build_waveform_discriminator(),
            encoder,
            options.gan_weight,
            recipe.optimiser.learning_rate,
        )
        trainer.compile(optimizer=optimizer_of(recipe), run_eagerly=True)
        rebuilt(trainer, run_dir, state, trainer.optimised())
        batches = TargetedCrops(
            waveforms, speakers, targets, run.batch_size, length, run.steps_per_epoch, run.seed, state["epoch"] if state else 0
        )
        return Phase(
            trainer, batches, "val_score", "max", lambda: trainer.generator, [reduce_lr_on_plateau(recipe)], validation_data=validation
        )

    best = fit(run_dir, recipe, build, progress)
    if is_chief():
        record = {"verifier": encoder.fingerprint, "audio_dir": str(audio_dir), "recordings": len(paths)}
        atomic_write_bytes(run_dir / "verifier.json", json.dumps(record, indent=2).encode())
    return best
