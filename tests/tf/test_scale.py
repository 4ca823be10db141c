"""Training at scale: shards built in parts, the seeded bounded stream, within-batch mining, and two workers."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from deep_speaker.config import load_recipe
from deep_speaker.errors import CacheError, ConfigError
from deep_speaker.losses import BatchHardTripletLoss
from deep_speaker.tf.shards import ShardedCorpus, build_shards, parse_part, speaker_part
from deep_speaker.tf.train import train_classifier, train_triplet
from tests.helpers import ROOT, tiny_recipe, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("scale") / "corpus", speakers=4, utterances=5)


@pytest.fixture(scope="module")
def shards(corpus, tmp_path_factory):
    """A 4-speaker corpus in shards of 3 utterances (4 training files), built as one part."""
    working_dir = tmp_path_factory.mktemp("shards") / "wd"
    build_shards(corpus, working_dir, utterances_per_file=3, validation_fraction=0.4, workers=1, progress=False)
    return working_dir


def test_parts_build_independently_merge_when_all_are_done_and_resume(corpus, tmp_path):
    (corpus / "spk0" / "broken.wav").write_bytes(b"RIFF not audio")
    try:
        first = build_shards(corpus, tmp_path, part=(0, 2), utterances_per_file=2, workers=1, progress=False)
        assert not (tmp_path / "shards" / "index.json").exists()  # part 1 missing
        second = build_shards(corpus, tmp_path, part=(1, 2), utterances_per_file=2, workers=1, progress=False)
    finally:
        (corpus / "spk0" / "broken.wav").unlink()
    assert set(first["speakers"]).isdisjoint(second["speakers"])
    assert sorted(first["speakers"] + second["speakers"]) == ["spk0", "spk1", "spk2", "spk3"]
    assert all(speaker_part(s, 2) == 0 for s in first["speakers"])
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["utterances"] == {"train": 16, "validation": 4} and len(index["failures"]) == 1
    assert "broken.wav" in next(iter(index["failures"])) and index["speakers"] == ["spk0", "spk1", "spk2", "spk3"]
    files = sorted((tmp_path / "shards").glob("*.tfrecord"))
    stamps = [f.stat().st_mtime_ns for f in files]
    build_shards(corpus, tmp_path, part=(1, 2), utterances_per_file=2, workers=1, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # finished files are not written again
    assert not list((tmp_path / "shards").glob(".*"))  # no temporary leftovers


def test_part_specification_and_missing_index_are_clear_errors(tmp_path):
    assert parse_part("2/4") == (2, 4)
    for bad in ("4/4", "x", "1-2"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_part(bad)
    with pytest.raises(CacheError, match="shards are missing") as raised:
        ShardedCorpus(tmp_path)
    assert "build-shards" in raised.value.cli_hint


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


@pytest.mark.slow
def test_stream_is_seeded_resumable_and_pipelines_read_disjoint_files(shards):
    corpus = ShardedCorpus(shards)
    run = load_recipe("classification", input="shards", batch_size=6, num_frames=40, steps_per_epoch=3, epochs=3).run
    whole = _batches(corpus.stream(run, 0))
    assert len(whole) == 9 and whole[0][0].shape == (6, 40, 64) and whole[0][0].dtype == np.float32
    assert all(0 <= label < 4 for _, labels in whole for label in labels)
    resumed = _batches(corpus.stream(run, 1))  # from epoch 1: what an uninterrupted run sees there
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(whole[3:], resumed))
    assert not np.array_equal(whole[0][0], whole[3][0])  # epochs differ
    other_seed = _batches(
        corpus.stream(
            load_recipe("classification", input="shards", batch_size=6, num_frames=40, steps_per_epoch=3, epochs=1, seed=5).run, 0
        )
    )
    assert not np.array_equal(whole[0][0], other_seed[0][0])
    assert corpus.train_files[0::2] and set(corpus.train_files[0::2]).isdisjoint(corpus.train_files[1::2])
    half = _batches(corpus.stream(run, 0, pipeline=1, pipelines=2))
    assert half[0][0].shape == (3, 40, 64)


def test_the_stream_builds_whatever_the_global_seed(shards):
    corpus = ShardedCorpus(shards)
    run = load_recipe("classification", input="shards", batch_size=6, num_frames=40, steps_per_epoch=1, epochs=1, seed=0).run
    for global_seed in (0, 123):
        keras.utils.set_random_seed(global_seed)
        assert _batches(corpus.stream(run, 0))[0][0].shape == (6, 40, 64)


def test_spec_augment_in_the_stream_masks_bands_and_frames(shards):
    corpus = ShardedCorpus(shards)
    run = load_recipe("classification", input="shards", batch_size=8, num_frames=60, steps_per_epoch=2, epochs=1).run
    plain, masked = _batches(corpus.stream(run, 0)), _batches(corpus.stream(run, 0, spec_augment=True))
    zero_bands = (masked[0][0] == 0).all(axis=1).sum(axis=1)
    zero_frames = (masked[0][0] == 0).all(axis=2).sum(axis=1)
    assert zero_bands.max() > 0 and zero_frames.max() > 0 and zero_bands.max() <= 8 and zero_frames.max() <= 20
    assert np.array_equal(masked[0][0][masked[0][0] != 0], plain[0][0][masked[0][0] != 0])


def test_speaker_batches_hold_whole_groups_of_crops(shards):
    corpus = ShardedCorpus(shards)
    run = load_recipe("triplet", input="shards", loss="batch_hard_triplet", batch_size=8, num_frames=40, steps_per_epoch=3, epochs=1).run
    for _, labels in _batches(corpus.stream(run, 0, speakers_per_batch=4)):
        groups = labels.reshape(4, 2)
        assert (groups == groups[:, :1]).all()


def test_batch_hard_triplet_loss_picks_the_hardest_pairs():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 5)).astype("float32")
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    similarity = embeddings @ embeddings.T
    expected = []
    for i in range(8):
        positives = [similarity[i, j] for j in range(8) if labels[j] == labels[i] and j != i]
        negatives = [similarity[i, j] for j in range(8) if labels[j] != labels[i]]
        expected.append(max(max(negatives) - min(positives) + 0.3, 0))
    loss = BatchHardTripletLoss(0.3)(labels, embeddings)
    assert float(loss) == pytest.approx(np.mean(expected), abs=1e-6)
    assert float(BatchHardTripletLoss(0.0)(labels, np.repeat(np.eye(4, 5, dtype="float32"), 2, axis=0))) == 0.0


def test_recipes_refuse_what_the_stream_cannot_do():
    with pytest.raises(ConfigError, match="input: shards"):
        load_recipe("triplet", loss="batch_hard_triplet")
    with pytest.raises(ConfigError, match="batch_hard_triplet"):
        load_recipe("triplet", input="shards")
    with pytest.raises(ConfigError, match="multiple of crops_per_speaker"):
        load_recipe("triplet", input="shards", loss="batch_hard_triplet", batch_size=10, crops_per_speaker=4)
    with pytest.raises(ConfigError, match="waveform"):
        load_recipe("classification", input="shards", waveform=True)
    with pytest.raises(ConfigError, match="strategy"):
        load_recipe("classification", strategy="parameter_server")


@pytest.mark.slow
def test_classification_then_batch_hard_triplet_train_on_shards(shards, tmp_path):
    working_dir = shutil.copytree(shards, tmp_path / "wd")
    best = train_classifier(working_dir, tiny_recipe(epochs=2, input="shards", select_by="val_eer", batch_size=8), progress=False)
    rows = (working_dir / "softmax" / "training.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_eer" in rows[0]
    recipe = tiny_recipe("triplet", epochs=1, input="shards", loss="batch_hard_triplet", batch_size=8, crops_per_speaker=2)
    triplet = train_triplet(working_dir, recipe, initial_checkpoint=best, progress=False)
    assert keras.saving.load_model(triplet).output_shape == (None, 32)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


TWO_WORKER_FLAGS = [
    "--input", "shards", "--model", "rescnn", "--width", "0.03125", "--embedding_dim", "16", "--optimiser", "sgd",
    "--learning_rate", "0.01", "--dropout", "0", "--batch_size", "12", "--num_frames", "40", "--steps_per_epoch", "1",
    "--select_by", "val_eer", "--quiet", "--epochs", "4",
]  # fmt: skip


def _train(working_dir, *flags, env=None):
    command = [sys.executable, str(ROOT / "cli.py"), "train-softmax", "--working_dir", str(working_dir), *TWO_WORKER_FLAGS, *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def _cluster(working_dir):
    hosts = [f"localhost:{port}" for port in _free_ports(2)]
    configs = [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}) for i in range(2)]
    return [_train(working_dir, "--strategy", "multi_worker", env={"TF_CONFIG": config}) for config in configs]


def _weights(path) -> list[np.ndarray]:
    return keras.saving.load_model(path).get_weights()


@pytest.mark.slow
def test_two_workers_survive_a_killed_worker_and_match_one_worker(shards, tmp_path):
    """Two CPU workers on loopback (MultiWorkerMirroredStrategy), one killed after two epochs: the survivor stops
    with a clear error, both restart and resume, and the result equals one process reading the same two input
    pipelines (same global batches). Tolerance 1e-4: with batch statistics computed the same way (one pass over the
    global batch) one step agrees to ~1e-6 (float32 sums in another order); the two-pass statistics of plain
    batch normalisation alone already move one step's weights by ~5e-4."""
    single_dir, cluster_dir = (shutil.copytree(shards, tmp_path / name) for name in ("single", "cluster"))
    single = _train(single_dir, "--input_pipelines", "2", "--sync_batch_norm", "true")
    workers = _cluster(cluster_dir)
    state = cluster_dir / "softmax" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["epoch"] >= 2):
        time.sleep(0.2)
    assert state.is_file(), workers[0].communicate()[0][-3000:]
    workers[1].send_signal(signal.SIGKILL)
    survivor_output = workers[0].communicate(timeout=180)[0]
    assert workers[0].returncode != 0 and "restart every worker" in survivor_output, survivor_output[-3000:]
    resumed_at = json.loads(state.read_text())["epoch"]
    assert resumed_at < 4
    workers = _cluster(cluster_dir)
    for process in [*workers, single]:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output[-3000:]
    rows = (cluster_dir / "softmax" / "training.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [0, 1, 2, 3]  # each epoch logged once, by the chief
    for ours, theirs in zip(_weights(cluster_dir / "softmax" / "last.keras"), _weights(single_dir / "softmax" / "last.keras")):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    config = json.loads(keras.saving.load_model(cluster_dir / "softmax" / "best.keras").get_layer("backbone").to_json())
    assert '"synchronized": true' not in json.dumps(config)  # saved models say local statistics (any backend loads them)


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from deep_speaker.config import load_recipe
from deep_speaker.losses import LOSSES
from deep_speaker.models import build_backbone
from deep_speaker.tf import distribute
from deep_speaker.tf.shards import ShardedCorpus
active = distribute._reduce_nested(tf.distribute.MirroredStrategy)(["/cpu:0", "/cpu:1"])
recipe = load_recipe("classification", input="shards", batch_size=8, num_frames=40, steps_per_epoch=2, epochs=2)
data = ShardedCorpus(sys.argv[1])
stream = distribute.distributed_stream(active, 1, lambda i: data.stream(recipe.run, 0), 8)
with active.scope():
    backbone = build_backbone("rescnn", 64, width=0.03125, embedding_dim=8)
    inputs = keras.Input((40, 64))
    model = keras.Model(inputs, LOSSES["softmax"].output(data.num_classes)(backbone(inputs)["embedding"]))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
distribute.synchronise_batch_norm(model, active)
history = model.fit(stream, epochs=2, steps_per_epoch=2, verbose=0)
print("replicas", active.num_replicas_in_sync, "finite", all(loss == loss for loss in history.history["loss"]))
"""


@pytest.mark.slow
def test_mirrored_strategy_splits_each_batch_over_local_replicas(shards):
    """Two logical CPU devices stand in for two GPUs: the worker's batch is rebatched per replica and fit runs."""
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(shards)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "replicas 2 finite True" in result.stdout, result.stderr[-3000:]


def test_damaged_shards_are_named_before_training_and_a_rerun_rebuilds_them(corpus, tmp_path, capsys):
    from tests.helpers import cli_in_process

    build_shards(corpus, tmp_path, utterances_per_file=3, validation_fraction=0.4, workers=1, progress=False)
    folder = tmp_path / "shards"
    files = sorted(folder.glob("train-*.tfrecord"))
    pristine = {f.name: f.read_bytes() for f in files}
    ShardedCorpus(tmp_path)  # intact: accepted
    truncated, flipped, deleted = files[0], files[1], files[2]

    def damage():
        truncated.write_bytes(pristine[truncated.name][: len(pristine[truncated.name]) // 2])
        data = bytearray(pristine[flipped.name])
        data[len(data) // 2] ^= 0x10
        flipped.write_bytes(bytes(data))
        deleted.unlink()

    damage()
    for expected in (truncated, flipped, deleted):
        with pytest.raises(
            CacheError, match=rf"{expected.name}: damaged shard .*run `build-shards --audio-dir DIR --working-dir .* --shard 0/1` again"
        ):
            ShardedCorpus(tmp_path)
        expected.write_bytes(pristine[expected.name])  # mend it: the next check names the next one
    damage()
    trained = cli_in_process(capsys, "train-softmax", "--working_dir", tmp_path, "--input", "shards", "--epochs", "1")
    assert trained.returncode == 2 and "damaged shard" in trained.stderr and "Traceback" not in trained.stderr
    record = build_shards(corpus, tmp_path, utterances_per_file=3, validation_fraction=0.4, workers=1, progress=False)
    assert sorted(record["rebuilt"]) == sorted([truncated.name, flipped.name])  # the deleted one is simply built again
    assert {f.name: f.read_bytes() for f in files} == pristine
    ShardedCorpus(tmp_path)
    (folder / "index.json").write_text('{"speakers": [')
    with pytest.raises(CacheError, match=r"index.json: unreadable shard index"):
        ShardedCorpus(tmp_path)
    (folder / "index.json").write_text('{"speakers": []}')
    with pytest.raises(CacheError, match=r"index.json: malformed shard index \(KeyError"):
        ShardedCorpus(tmp_path)
