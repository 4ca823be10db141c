"""The resume state of the custom training loops (AdvGAN, adversarial fine-tuning, AGAIN-VC): a step counter and
TensorFlow checkpoints of the models and optimisers in the run folder (the last one kept)."""

from __future__ import annotations

import tensorflow as tf


def resumable_steps(run_dir, **trackables) -> tuple[tf.Variable, tf.train.CheckpointManager]:
    """The step counter and the checkpoint manager over `trackables` in `run_dir`, both restored from the latest
    checkpoint when there is one; `manager.save()` makes a new resume point."""
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, **trackables)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir), max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return step, manager
