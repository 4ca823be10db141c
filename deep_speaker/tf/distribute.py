"""The distribution seam: which `tf.distribute` strategy builds and trains the model, how the streamed input is
split between workers, and which process writes files.

Strategies (`run.strategy`): `default` (one device), `mirrored` (the GPUs of one machine), `multi_worker`
(machines listed in `TF_CONFIG`, all reading the run folder from a shared file system; only the chief writes).
Under more than one replica, batch normalisation uses the statistics of the global batch (synchronised), so a
run's result does not depend on how many replicas share the batch (`run.sync_batch_norm` does the same on one
device, for comparisons); saved models say plain local statistics, so they load on every backend.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

import keras
import numpy as np
import tensorflow as tf


def _reduce_nested(strategy_class):
    """`strategy_class` whose `reduce` accepts nested values and scalars with an axis, as Keras 3's `fit` calls
    it under collective (multi-worker) strategies: it reduces a whole (x, y) batch at once to build the model
    symbolically, and per-replica scalar losses with axis=0; TensorFlow's takes one tensor of rank >= 1 there."""

    class Strategy(strategy_class):
        def reduce(self, reduce_op, value, axis):
            def one(tensor):
                rank = self.experimental_local_results(tensor)[0].shape.rank
                return super(Strategy, self).reduce(reduce_op, tensor, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    Strategy.__name__ = strategy_class.__name__
    return Strategy


@functools.cache
def strategy(name: str = "default") -> tf.distribute.Strategy:
    """The strategy named by a recipe's `run.strategy`, created once per process (collective strategies must be
    created before any other TensorFlow work)."""
    if name == "mirrored":
        return _reduce_nested(tf.distribute.MirroredStrategy)()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            from ..errors import ConfigError

            raise ConfigError("strategy multi_worker needs TF_CONFIG (the cluster's addresses and this task); see docs/training.md")
        return _reduce_nested(tf.distribute.MultiWorkerMirroredStrategy)()
    return tf.distribute.get_strategy()


def num_workers() -> int:
    """Processes in the cluster of `TF_CONFIG` (1 without it)."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
    return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))


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


def distributed_stream(active: tf.distribute.Strategy, pipelines: int, make_pipeline, global_batch: int):
    """The training input under `active`: `pipelines` file-disjoint streams (`make_pipeline(i)`, each yielding
    global_batch / pipelines crops per step) of which each worker reads its own (every num_workers-th) and
    concatenates them; then split over the worker's local replicas. One process with `pipelines` > 1 reads them
    all, which gives the same global batches as that many workers."""
    if global_batch % pipelines:
        from ..errors import ConfigError

        raise ConfigError(f"batch_size {global_batch} must be a multiple of the {pipelines} input pipelines")

    def worker_stream(context: tf.distribute.InputContext):
        workers, worker = context.num_input_pipelines, context.input_pipeline_id
        if pipelines % workers:
            from ..errors import ConfigError

            raise ConfigError(f"input_pipelines ({pipelines}) must be a multiple of the {workers} workers")
        streams = tuple(make_pipeline(i) for i in range(worker, pipelines, workers))
        stream = streams[0] if len(streams) == 1 else tf.data.Dataset.zip(streams).map(_concatenate)
        local_replicas = active.num_replicas_in_sync // workers
        if local_replicas > 1:
            stream = stream.rebatch(global_batch // active.num_replicas_in_sync)
        return stream.prefetch(tf.data.AUTOTUNE)

    if active.num_replicas_in_sync == 1 and num_workers() == 1:
        return worker_stream(tf.distribute.InputContext(1, 0, 1))
    return active.distribute_datasets_from_function(worker_stream)


def _concatenate(*batches):
    return tuple(tf.concat([batch[k] for batch in batches], axis=0) for k in range(len(batches[0])))


def _batch_norms(model: keras.Model):
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, keras.layers.BatchNormalization)]


def synchronise_batch_norm(model: keras.Model, active: tf.distribute.Strategy, always: bool = False) -> None:
    """Global-batch statistics in every batch normalisation of `model` when `active` has several replicas (or
    `always`: on one device the statistics are the same, but computed in one pass, E[x^2] - E[x]^2, as across
    replicas, so a single-device run can be compared bit for bit with a distributed one)."""
    if always or active.num_replicas_in_sync > 1:
        for layer in _batch_norms(model):
            layer.synchronized = True


@contextlib.contextmanager
def local_batch_norm(model: keras.Model):
    """Within the block, `model`'s batch normalisations say `synchronized=False` (what a saved model must say,
    so it loads on every backend); the training graph already traced keeps synchronising."""
    synchronised = [layer for layer in _batch_norms(model) if layer.synchronized]
    for layer in synchronised:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in synchronised:
            layer.synchronized = True


def embed_locally(model: keras.Model, crops: np.ndarray, batch_size: int = 96) -> np.ndarray:
    """`model` on `crops` in this process alone: under a multi-worker strategy `predict` would split the crops
    between workers; validation needs every worker to see the same complete result."""
    if num_workers() == 1:
        return model.predict(crops, batch_size=batch_size, verbose=0)
    return np.concatenate(
        [keras.ops.convert_to_numpy(model(crops[i : i + batch_size], training=False)) for i in range(0, len(crops), batch_size)]
    )
