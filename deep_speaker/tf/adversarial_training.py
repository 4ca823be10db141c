"""PGD adversarial fine-tuning of a speaker model (Madry et al. 2018, on the raw waveform).

Each step takes `batch` waveform crops of training speakers, finds for each the perturbation within `snr_db` of it
that most raises the speaker-classification loss (PGD: `pgd_steps` normalised-gradient steps in the L2 ball of
radius |x| 10^(-snr/20), through the model's own front end), and updates the model on the clean and the
perturbed crops together (AAM-softmax over the training speakers, class directions starting at their mean
embeddings), so it keeps its clean accuracy while the attacker's direction stops paying. A TensorFlow checkpoint
in the run folder every `save_every` steps lets an interrupted run resume; the fine-tuned speaker model is saved
(atomically) at the end.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ..audio import crop_waveform, load_speech
from ..checkpoints import check_save_path, save_model
from ..data.corpus import recordings_by_speaker
from ..layers import CosineLogits
from ..losses import AAMSoftmaxLoss
from ..model_files import load_model
from ..models import feature_config_of
from .resume import resumable_steps


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


def adversarial_finetune(
    checkpoint,
    audio_dir,
    out,
    run_dir,
    steps: int = 150,
    batch: int = 16,
    seconds: float = 2.0,
    snr_db: float = 30.0,
    pgd_steps: int = 3,
    learning_rate: float = 1e-4,
    margin: float = 0.2,
    save_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Fine-tune the speaker model `checkpoint` on the speakers of `audio_dir` against PGD at `snr_db`; returns `out`."""
    out = check_save_path(out)  # a name the model cannot be saved under is refused now, not after training
    model = load_model(checkpoint)
    trim = feature_config_of(model).trim
    by_speaker = recordings_by_speaker(audio_dir, 2, "adversarial fine-tuning")
    speakers = list(by_speaker)
    items = [(label, path) for label, speaker in enumerate(speakers) for path in by_speaker[speaker]]
    labels = np.array([label for label, _ in items])
    waveforms = [load_speech(path, trim) for _, path in tqdm(items, desc="recordings", disable=not progress)]
    length = int(seconds * 16000)

    classifier = CosineLogits(len(speakers), name="adversarial_classes")
    first_crops = np.stack([crop_waveform(w, length, np.random.default_rng(i)) for i, w in enumerate(waveforms)])
    embeddings = model.predict(first_crops, batch_size=64, verbose=0)
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in range(len(speakers))]).T
    classifier.build((None, embeddings.shape[1]))
    classifier.directions.assign(means / np.linalg.norm(means, axis=0, keepdims=True))
    loss_function = AAMSoftmaxLoss(margin, 30.0)
    optimiser = keras.optimizers.Adam(learning_rate)
    variables = model.trainable_variables + classifier.trainable_variables
    optimiser.build(variables)
    step, manager = resumable_steps(run_dir, model=model, classifier=classifier, optimiser=optimiser)

    @tf.function
    def train_step(clean, targets):
        delta = pgd_perturbation(lambda w: loss_function(targets, classifier(model(w, training=False))), clean, snr_db, pgd_steps)
        both, both_targets = tf.concat([clean, clean + delta], 0), tf.concat([targets, targets], 0)
        with tf.GradientTape() as tape:
            loss = loss_function(both_targets, classifier(model(both, training=True)))
        optimiser.apply(tape.gradient(loss, variables), variables)
        return loss

    bar = tqdm(total=steps, initial=int(step.numpy()), desc="adversarial fine-tuning", disable=not progress)
    while int(step.numpy()) < steps:
        rng = np.random.default_rng([seed, int(step.numpy())])
        chosen = rng.choice(len(items), batch)
        loss = train_step(tf.constant(np.stack([crop_waveform(waveforms[i], length, rng) for i in chosen])), tf.constant(labels[chosen]))
        step.assign_add(1)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}")
        if int(step.numpy()) % save_every == 0 or int(step.numpy()) == steps:
            manager.save()
    bar.close()
    save_model(model, out)
    return out
