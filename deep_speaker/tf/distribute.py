"""The distribution seam: which strategy builds the model, and which process writes files."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def strategy() -> tf.distribute.Strategy:
    """The strategy whose scope builds models, optimisers and metrics (the default one for now)."""
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True for the process that writes checkpoints, logs and TensorBoard: no TF_CONFIG, the chief, or worker 0
    of a cluster without a chief."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})
