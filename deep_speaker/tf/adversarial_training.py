"""PGD adversarial fine-tuning of a speaker model (Madry et al. 2018, on the raw waveform), phase `adversarial` of the
one driver (`tf/train.fit`: resume, logs, best model, early stopping).

Each step takes `batch_size` waveform crops of training speakers, finds for each the perturbation within `snr_db` of
it that most raises the speaker-classification loss (PGD: `pgd_steps` normalised-gradient steps in the L2 ball of
radius |x| 10^(-snr/20), through the model's own front end), and updates the model on the clean and the
perturbed crops together (AAM-softmax over the training speakers, class directions starting at their mean
embeddings), so it keeps its clean accuracy while the attacker's direction stops paying. Every training speaker
trains, so the best epoch is the one with the lowest loss; `best.keras` is the fine-tuned speaker model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ..audio import SAMPLE_RATE, crop_waveform, load_speech
from ..config import Recipe, validate
from ..data.corpus import recordings_by_speaker
from ..data.crops import WaveformCrops
from ..layers import CosineLogits
from ..losses import AAMSoftmaxLoss
from ..model_files import load_model
from ..models import feature_config_of
from .train import Phase, fit, optimizer_of, rebuilt, reduce_lr_on_plateau


def pgd_perturbation(loss_of, clean: tf.Tensor, snr_db: float, steps: int) -> tf.Tensor:
    """Per example, the perturbation in the L2 ball of radius |x| 10^(-snr/20) that `steps` steps of normalised
    gradient ascent on `loss_of(waveforms)` reach (step 2.5 x radius / steps; audio kept in [-1, 1])."""
    radius = tf.norm(clean, axis=1, keepdims=True) * 10.0 ** (-snr_db / 20.0)
    delta = tf.zeros_like(clean)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = loss_of(clean + delta)
        gradient = tape.gradient(loss, delta)
        delta = delta + 2.5 * radius / steps * gradient / (tf.norm(gradient, axis=1, keepdims=True) + 1e-12)
        delta = tf.clip_by_value(clean + delta, -1.0, 1.0) - clean
        delta = delta * tf.minimum(1.0, radius / (tf.norm(delta, axis=1, keepdims=True) + 1e-12))
    return tf.stop_gradient(delta)


class PGDTrainer(keras.Model):
    """A speaker model and its speaker classifier trained on clean and PGD-attacked crops together."""

    def __init__(self, speaker_model, classifier, classification_loss, snr_db: float, pgd_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.speaker_model, self.classifier, self.classification_loss = speaker_model, classifier, classification_loss
        self.snr_db, self.pgd_steps = snr_db, pgd_steps
        self.loss_tracker = keras.metrics.Mean("loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def get_config(self):  # saved for resuming only: `rebuilt` makes the trainer again and fills it
        return {"name": self.name, "trainable": self.trainable}

    def call(self, waveforms, training=False):
        return self.classifier(self.speaker_model(waveforms, training=training))

    def train_step(self, data):
        clean, targets = data
        delta = pgd_perturbation(lambda w: self.classification_loss(targets, self(w)), clean, self.snr_db, self.pgd_steps)
        both, both_targets = tf.concat([clean, clean + delta], 0), tf.concat([targets, targets], 0)
        with tf.GradientTape() as tape:
            loss = self.classification_loss(both_targets, self(both, training=True))
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def adversarial_finetune(working_dir, checkpoint, audio_dir, recipe: Recipe, progress: bool = True, run_name: str = "adversarial") -> Path:
    """Fine-tune the speaker model `checkpoint` on the speakers of `audio_dir` against PGD at the recipe's SNR;
    returns the run's best.keras (the fine-tuned speaker model)."""
    validate(recipe)
    options, run = recipe.pgd, recipe.run
    trim = feature_config_of(load_model(checkpoint)).trim
    by_speaker = recordings_by_speaker(audio_dir, 2, "adversarial fine-tuning")
    speakers = list(by_speaker)
    items = [(label, path) for label, speaker in enumerate(speakers) for path in by_speaker[speaker]]
    labels = np.array([label for label, _ in items])
    waveforms = [load_speech(path, trim) for _, path in tqdm(items, desc="recordings", disable=not progress)]
    length = int(options.seconds * SAMPLE_RATE)
    run_dir = Path(working_dir) / run_name

    def build(state):
        model = load_model(checkpoint)
        classifier = CosineLogits(len(speakers), name="adversarial_classes")
        classifier.build((None, model.output_shape[-1]))
        if not state:  # a fresh start: class directions at the class means (resuming reads them from last.keras)
            first_crops = np.stack([crop_waveform(w, length, np.random.default_rng(i)) for i, w in enumerate(waveforms)])
            embeddings = model.predict(first_crops, batch_size=64, verbose=0)
            means = np.stack([embeddings[labels == c].mean(axis=0) for c in range(len(speakers))]).T
            classifier.directions.assign(means / np.linalg.norm(means, axis=0, keepdims=True))
        trainer = PGDTrainer(model, classifier, AAMSoftmaxLoss(recipe.loss.margin, recipe.loss.scale), options.snr_db, options.pgd_steps)
        trainer.compile(optimizer=optimizer_of(recipe))
        rebuilt(trainer, run_dir, state)
        batches = WaveformCrops(waveforms, labels, run.batch_size, length, run.steps_per_epoch, run.seed, state["epoch"] if state else 0)
        return Phase(trainer, batches, "loss", "min", lambda: trainer.speaker_model, [reduce_lr_on_plateau(recipe)])

    return fit(run_dir, recipe, build, progress)
