"""Sharded feature corpora for training at scale: TFRecord shards built in parts (one per machine, resumable)
and a `tf.data` stream that reads them with bounded memory.

Why feature shards (float16 filterbanks) rather than compressed audio: decoding is a copy, so the accelerator
never waits for the CPU whatever the corpus size, and the shards cost about what FLAC costs on disk (2 bytes x
64 bands x 100 frames = 12.8 kB per second of speech). Augmentation at scale is SpecAugment in the stream, plus
augmented recordings added to the corpus before sharding; waveform augmentation on the fly needs audio and stays
with the in-memory pipeline.

Layout under `<working_dir>/shards/`:
    train-PPPPP-of-NNNNN-KKKKK.tfrecord       training utterances of part P of N, shuffled across files
    validation-PPPPP-of-NNNNN-KKKKK.tfrecord  the held-out utterances of the same speakers
    part-PPPPP-of-NNNNN.json                 what part P wrote (its files with their sizes and SHA-256, speakers,
                                             failures): its completion mark
    index.json                               all parts merged: files, checksums, speakers (the class order), counts
Speakers are assigned to parts by a hash of their name, so machines need no coordination; each part splits its
speakers' utterances into train / validation like `SpeakerFeatures` (the last `validation_fraction`).
Nothing is trusted on its name: a rerun of `build-shards` rebuilds a file whose size or SHA-256 is not what was
written (truncated, bit-flipped, deleted), and training checks every file and the index before it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ..data.cache import check_feature_config, featurise, read_feature_config, worker_pool
from ..data.corpus import discover_utterances
from ..data.split import SpeakerFeatures, held_out_count
from ..errors import CacheError, ConfigError
from ..features import FeatureConfig
from ..fileio import atomic_replace, atomic_write_bytes

SHARDS_DIR = "shards"
INDEX = "index.json"
VALIDATION_LIMIT = 2000  # held-out utterances kept in memory for the validation EER (enough for a stable EER)


def parse_part(text: str) -> tuple[int, int]:
    """'i/n' (0-based part i of n) -> (i, n)."""
    try:
        index, count = (int(value) for value in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4 for the first of four parts") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: needs 0 <= i < n")
    return index, count


def _part_name(index: int, count: int) -> str:
    return f"{index:05d}-of-{count:05d}"


def speaker_part(speaker: str, count: int) -> int:
    """The part a speaker's utterances go to (stable across machines and runs)."""
    return zlib.crc32(speaker.encode()) % count


def _example(features: np.ndarray, speaker: str, utterance_id: str) -> bytes:
    feature = {
        "features": tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.astype(np.float16).tobytes()])),
        "frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[features.shape[0]])),
        "speaker": tf.train.Feature(bytes_list=tf.train.BytesList(value=[speaker.encode()])),
        "utterance": tf.train.Feature(bytes_list=tf.train.BytesList(value=[utterance_id.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def checksum(path: Path) -> dict:
    """What a shard file is: its size and SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _damage(path: Path, expected: dict | None) -> str | None:
    """Why the shard file at `path` is not the one written (missing, other size, other content), or None."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if expected is None or not isinstance(expected, dict):
        return "no checksum recorded"
    if size != expected.get("bytes"):
        return f"{size:,} bytes where {expected.get('bytes')!r} were written (truncated or overwritten)"
    if checksum(path)["sha256"] != expected.get("sha256"):
        return "its content differs from what was written (SHA-256 mismatch: bit rot or an edit)"
    return None


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheError(f"{path}: unreadable {what} ({error})") from None
    if not isinstance(value, dict):
        raise CacheError(f"{path}: unreadable {what} (not a JSON object)")
    return value


def _write_file(path: Path, utterances, config: FeatureConfig, pool) -> dict[str, str]:
    """Featurise `utterances` and write them as one TFRecord file, atomically; returns {path: reason} failures."""
    failures, records = {}, []
    for utterance, (features, error) in zip(utterances, pool.map(featurise, [(u, config) for u in utterances])):
        if error is None:
            records.append(_example(features, utterance.speaker, utterance.utterance_id))
        else:
            failures[str(utterance.path)] = error

    def write(temporary):
        with tf.io.TFRecordWriter(temporary) as writer:
            for record in records:
                writer.write(record)

    atomic_replace(path, write)
    return failures


def build_shards(
    source,
    working_dir,
    config: FeatureConfig = FeatureConfig(),
    part: tuple[int, int] = (0, 1),
    utterances_per_file: int = 500,
    validation_fraction: float = 0.2,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write part `part` = (i, n) of the shards of `source` (see module docstring); merge the index when every
    part is there. A rerun skips finished files. Returns the part's record."""
    index, count = part
    if utterances_per_file < 1:
        raise ConfigError(f"utterances_per_file must be >= 1, got {utterances_per_file}")
    if not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    working_dir = Path(working_dir)
    folder = working_dir / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    check_feature_config(working_dir, config)
    by_speaker: dict[str, list] = {}
    for utterance in discover_utterances(source):
        if speaker_part(utterance.speaker, count) == index:
            by_speaker.setdefault(utterance.speaker, []).append(utterance)
    train, validation = [], []
    for members in by_speaker.values():
        held_out = held_out_count(len(members), validation_fraction)
        train += members[: len(members) - held_out]
        validation += members[len(members) - held_out :]
    np.random.default_rng([index, count]).shuffle(train)  # each file mixes speakers: the stream interleaves few files
    name = _part_name(index, count)
    plan = [
        (folder / f"{kind}-{name}-{k:05d}.tfrecord", members[start : start + utterances_per_file])
        for kind, members in (("train", train), ("validation", validation))
        for k, start in enumerate(range(0, len(members), utterances_per_file))
    ]
    record_path = folder / f"part-{name}.json"
    done = _previous_record(record_path)
    failures, checksums, rebuilt = dict(done.get("failures", {})), dict(done.get("checksums", {})), []
    with worker_pool(workers or os.cpu_count() or 1) as pool:
        for path, members in tqdm(plan, desc=f"shards {index}/{count}", unit="file", disable=not progress):
            if path.is_file() and _damage(path, checksums.get(path.name)) is None:
                continue
            if path.is_file():
                rebuilt.append(path.name)
            failures.update(_write_file(path, members, config, pool))
            checksums[path.name] = checksum(path)
    failed = set(failures)
    record = {
        "part": [index, count],
        "files": {kind: [path.name for path, _ in plan if path.name.startswith(kind)] for kind in ("train", "validation")},
        "checksums": {path.name: checksums[path.name] for path, _ in plan},
        "utterances": {
            "train": sum(str(u.path) not in failed for u in train),
            "validation": sum(str(u.path) not in failed for u in validation),
        },
        "speakers": sorted(by_speaker),
        "failures": failures,
    }
    atomic_write_bytes(record_path, json.dumps(record, indent=1).encode())
    merge_parts(working_dir, count)
    return {**record, "rebuilt": rebuilt}


def _previous_record(path: Path) -> dict:
    """An earlier run's record of this part; an unreadable one counts as none (its files are then checked afresh)."""
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def merge_parts(working_dir, count: int) -> Path | None:
    """Write `shards/index.json` from the `count` part records once they all exist (else None)."""
    folder = Path(working_dir) / SHARDS_DIR
    paths = [folder / f"part-{_part_name(i, count)}.json" for i in range(count)]
    if not all(path.is_file() for path in paths):
        return None
    records = [_read_json(path, "shard part record") for path in paths]
    index = {
        "parts": count,
        "feature_config": asdict(read_feature_config(working_dir)),
        "speakers": sorted({s for r in records for s in r["speakers"]}),
        "files": {kind: [f for r in records for f in r["files"][kind]] for kind in ("train", "validation")},
        "checksums": {name: value for r in records for name, value in r.get("checksums", {}).items()},
        "utterances": {kind: sum(r["utterances"][kind] for r in records) for kind in ("train", "validation")},
        "failures": {path: reason for r in records for path, reason in r["failures"].items()},
    }
    atomic_write_bytes(folder / INDEX, json.dumps(index, indent=1).encode())
    return folder / INDEX


_SCHEMA = {
    "features": tf.io.FixedLenFeature([], tf.string),
    "frames": tf.io.FixedLenFeature([], tf.int64),
    "speaker": tf.io.FixedLenFeature([], tf.string),
    "utterance": tf.io.FixedLenFeature([], tf.string),
}


class ShardedCorpus:
    """A shard index: the speakers (class order), the training stream, and a bounded validation set in memory
    with the `SpeakerFeatures` interface the validation callbacks use (`crops`, `labels`, `validation`)."""

    def __init__(self, working_dir):
        self.working_dir = Path(working_dir)
        self.folder = self.working_dir / SHARDS_DIR
        path = self.folder / INDEX
        if not path.is_file():
            raise CacheError(
                f"{self.working_dir}: no {SHARDS_DIR}/{INDEX}: the shards are missing or some parts are unfinished",
                cli_hint=f"run `build-shards --audio-dir DIR --working-dir {self.working_dir} [--shard i/n]` for every part",
            )
        rebuild = f"build-shards --audio-dir DIR --working-dir {self.working_dir}"
        index = _read_json(path, f"shard index; run `{rebuild}` again for any part to rewrite it")
        try:
            self.feature_config = FeatureConfig.from_dict(index["feature_config"])
            self.speakers = [str(speaker) for speaker in index["speakers"]]
            names = {kind: [str(name) for name in index["files"][kind]] for kind in ("train", "validation")}
            checksums = index.get("checksums", {})
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise CacheError(
                f"{path}: malformed shard index ({type(error).__name__}: {error}); run `{rebuild}` again to rewrite it"
            ) from None
        self.num_classes = len(self.speakers)
        self.train_files = [str(self.folder / name) for name in names["train"]]
        self.validation_files = [str(self.folder / name) for name in names["validation"]]
        if not self.train_files:
            raise CacheError(f"{path}: no training utterances in the shards")
        for name in names["train"] + names["validation"]:
            problem = _damage(self.folder / name, checksums.get(name))
            if problem is not None:
                part = re.search(r"-(\d{5})-of-(\d{5})-", name)
                shard = f" --shard {int(part.group(1))}/{int(part.group(2))}" if part else ""
                raise CacheError(
                    f"{self.folder / name}: damaged shard ({problem}); run `{rebuild}{shard}` again: "
                    "it rebuilds damaged files and skips complete ones"
                )
        self._validation = None
        keys = tf.constant(self.speakers if self.speakers else [""])
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(tf.size(keys), dtype=tf.int64)), default_value=-1
        )

    def _decode(self, record):
        example = tf.io.parse_single_example(record, _SCHEMA)
        features = tf.reshape(tf.io.decode_raw(example["features"], tf.float16), [-1, self.feature_config.num_fbanks])
        return features, self.table.lookup(example["speaker"])

    def _load_validation(self):
        if self._validation is None:
            records = tf.data.TFRecordDataset(self.validation_files).take(VALIDATION_LIMIT).map(self._decode)
            pairs = [(features.numpy().astype(np.float32), int(label)) for features, label in records]
            self._validation = ([f for f, _ in pairs], np.array([label for _, label in pairs], dtype=int))
        return self._validation

    @property
    def features(self) -> list[np.ndarray]:
        return self._load_validation()[0]

    @property
    def labels(self) -> np.ndarray:
        return self._load_validation()[1]

    @property
    def validation(self) -> np.ndarray:
        return np.arange(len(self.features))

    crops = SpeakerFeatures.crops  # the held-out utterances cropped as the feature cache crops them

    def stream(
        self,
        run,
        first_epoch: int,
        pipeline: int = 0,
        pipelines: int = 1,
        spec_augment: bool = False,
        speakers_per_batch: int = 0,
    ) -> tf.data.Dataset:
        """Batches of (crops, labels) for epochs `first_epoch`.. of pipeline `pipeline` of `pipelines`: its
        share (`run.batch_size // pipelines`) of each global batch, from its own files (every `pipelines`-th).

        Epoch e reads the pipeline's files in an order seeded by (seed, e, pipeline), interleaved, cropped at
        random positions (stateless seeds from the element's place in the stream) and shuffled in a buffer of
        `run.shuffle_buffer` crops, so a resumed run sees the same batches and memory is bounded by the buffer,
        not the corpus. With `speakers_per_batch` the batch holds that many speakers with batch / speakers crops
        each (for within-batch hard-negative mining)."""
        files = self.train_files[pipeline::pipelines]
        if not files:
            raise ConfigError(
                f"{self.folder}: {pipelines} input pipelines but only {len(self.train_files)} training files; build smaller files"
            )
        batch, num_frames, seed = run.batch_size // pipelines, run.num_frames, run.seed
        num_fbanks = self.feature_config.num_fbanks
        per_speaker = batch // speakers_per_batch if speakers_per_batch else 0

        def crop(index, element, epoch):
            features, label = element
            frames = tf.shape(features)[0]
            stateless = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch * 1009 + pipeline, index])
            start = tf.random.stateless_uniform([], stateless, 0, tf.maximum(frames - num_frames, 0) + 1, tf.int32)
            window = tf.cast(features[start : start + num_frames], tf.float32)
            window = tf.pad(window, [[0, num_frames - tf.shape(window)[0]], [0, 0]])
            if spec_augment:
                window = _mask_spans(window, stateless + 1)
            return tf.ensure_shape(window, [num_frames, num_fbanks]), label

        def epoch_stream(epoch):
            epoch_seed = tf.stack([tf.cast(seed, tf.int64), epoch * 1009 + pipeline])
            order = tf.random.experimental.stateless_shuffle(tf.constant(files), epoch_seed)
            records = tf.data.Dataset.from_tensor_slices(order).interleave(
                tf.data.TFRecordDataset, cycle_length=min(8, len(files)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
            crops = records.repeat().map(self._decode, num_parallel_calls=tf.data.AUTOTUNE).enumerate()
            crops = crops.map(lambda i, e: crop(i, e, epoch), num_parallel_calls=tf.data.AUTOTUNE)
            # a Python seed: TensorFlow compares a tensor seed with 0 in Python when the global seed is 0 (and fails);
            # epochs still differ by their file order and crop positions
            crops = crops.shuffle(run.shuffle_buffer, seed=seed + 104729 * pipeline, reshuffle_each_iteration=False)
            if per_speaker:
                crops = crops.group_by_window(lambda _, label: label, lambda _, window: window.batch(per_speaker), window_size=per_speaker)
                batches = crops.batch(speakers_per_batch, drop_remainder=True)
                batches = batches.map(lambda x, y: (tf.reshape(x, [batch, num_frames, num_fbanks]), tf.reshape(y, [batch])))
            else:
                batches = crops.batch(batch, drop_remainder=True)
            return batches.take(run.steps_per_epoch)

        epochs = tf.data.Dataset.range(first_epoch, run.epochs)
        return epochs.flat_map(epoch_stream)


def _mask_spans(window: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`data.augment.mask_spans` in the graph: one band of up to 8 filterbanks and one span of up to 20 frames
    set to zero, at positions drawn from stateless seeds."""
    frames, bands = tf.shape(window)[0], tf.shape(window)[1]
    draws = tf.random.stateless_uniform([4], seed, 0, 1 << 30, tf.int32)
    band_width, frame_width = draws[0] % 9, draws[1] % 21
    band_start = draws[2] % tf.maximum(bands - 8, 1)
    frame_start = draws[3] % tf.maximum(frames - 20, 1)
    band_keep = tf.logical_or(tf.range(bands) < band_start, tf.range(bands) >= band_start + band_width)
    frame_keep = tf.logical_or(tf.range(frames) < frame_start, tf.range(frames) >= frame_start + frame_width)
    keep = tf.logical_and(frame_keep[:, None], band_keep[None, :])
    return tf.where(keep, window, tf.zeros_like(window))
