"""Corpus processing on a cluster engine: Ray Data batch inference, on this machine or a running Ray cluster.

`embed_corpus` and `diarize_corpus` stream the recordings of a corpus (folders, `wav.scp`, path lists:
`data.corpus.named_recordings`) through `workers` Ray actors, each holding one encoder or diarizer (built by
`assembly`, so the results are exactly those of `embed` and `diarize`), and write what comes back as Parquet parts in
the output folder (`utterance_id`, `path`, `embedding` or `turns` (JSON), `refused`), each part written atomically and
listed in `manifest.json` as it lands. Run again, a job skips every utterance a finished part holds: an interrupted
job resumes. `address=None` starts Ray on this machine; an address
(`ray://head:10001`, or `auto` on a cluster node) uses a running cluster, whose workers need the toolkit installed and
the audio at the same paths (a shared file system).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data.corpus import named_recordings
from .errors import ConfigError, MissingAudioError
from .exported import DEFAULT_RUNTIME
from .fileio import atomic_replace, atomic_write_bytes

MANIFEST = "manifest.json"
FORMAT = "deep-speaker-corpus-embeddings"


class _Embedder:
    """A Ray actor's encoder: loaded once, then every batch of paths embedded as `embed` would."""

    def __init__(self, checkpoint, runtime: str):
        from .assembly import load_encoder

        self.encoder = load_encoder(checkpoint, runtime)

    def __call__(self, batch: dict) -> dict:
        refused: dict = {}
        vectors = self.encoder.embed_many(list(batch["path"]), progress=False, refused=refused)
        return {**batch, "embedding": list(vectors.astype(np.float32)), "refused": _refusals(batch, refused)}


class _Diarizer:
    """A Ray actor's diarizer: loaded once, then every recording of a batch diarized as `diarize` would."""

    def __init__(self, checkpoint, runtime: str, config: dict, overlap_detector):
        from .assembly import load_diarizer
        from .diarization.pipeline import DiarizationConfig

        self.diarizer = load_diarizer(checkpoint, DiarizationConfig(**config), overlap_detector, runtime=runtime)

    def __call__(self, batch: dict) -> dict:
        from .diarization.output import segments_json
        from .errors import DeepSpeakerError

        turns, refused = [], {}
        for path in batch["path"]:
            try:
                turns.append(segments_json(self.diarizer.diarize(path)))
            except DeepSpeakerError as error:  # a recording it cannot take: said in its row, the job goes on
                turns.append("[]")
                refused[path] = str(error)
        return {**batch, "turns": np.array(turns, dtype=object), "refused": _refusals(batch, refused)}


def _refusals(batch: dict, refused: dict) -> np.ndarray:
    return np.array([refused.get(path, "") for path in batch["path"]], dtype=object)


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("corpus embedding on a cluster needs Ray Data: pip install 'ray[data]'") from None
    return ray


def _read_manifest(out_dir: Path, job: dict) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, **job, "parts": []}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or {key: manifest.get(key) for key in job} != job:
        raise ConfigError(
            f"{path}: the results of another job ({ {key: manifest.get(key) for key in job} }), not {job}: use another output folder"
        )
    return manifest


def finished_utterances(out_dir) -> set[str]:
    """The utterance ids the finished parts of `out_dir` hold."""
    if not (Path(out_dir) / MANIFEST).is_file():
        return set()
    return {uid for table in _tables(out_dir) for uid in table["utterance_id"].to_pylist()}


def _recordings(sources) -> list[tuple[str, str]]:
    """(name, path) of every recording of `sources`, refused before any model or Ray starts when a file is missing (a
    wrong path stops the job; a recording that cannot be used is a refused row)."""
    recordings = [(name, str(path)) for name, path in named_recordings(sources)]
    missing = [path for _, path in recordings if not Path(path).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingAudioError(f"{missing[0]}: no such file{more}")
    return recordings


def _run(
    actor, options: dict, job: dict, recordings, out_dir, address, workers: int, batch_size: int, part_size: int, progress: bool
) -> Path:
    """Stream the `recordings` not yet in `out_dir` through `workers` `actor`s, writing each part as it lands."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    ray = _require_ray()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir, job)
    done = finished_utterances(out_dir)
    recordings = [(name, path) for name, path in recordings if name not in done]
    if not recordings:
        return out_dir / MANIFEST
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    results = ray.data.from_items([{"utterance_id": name, "path": path} for name, path in recordings]).map_batches(
        actor, fn_constructor_kwargs=options, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers), batch_format="numpy"
    )
    with tqdm(total=len(recordings), desc=f"{job['job']} corpus", unit="utt", disable=not progress) as bar:
        for batch in results.iter_batches(batch_size=part_size, batch_format="numpy"):
            columns = {name: pa.array(batch[name].tolist()) for name in ("utterance_id", "path", "refused")}
            if "embedding" in batch:
                columns["embedding"] = pa.array([vector.tolist() for vector in batch["embedding"]], type=pa.list_(pa.float32()))
            else:
                columns["turns"] = pa.array(batch["turns"].tolist())
            table = pa.table(columns)
            name = f"part-{len(manifest['parts']):05d}.parquet"
            atomic_replace(out_dir / name, lambda temporary, table=table: pq.write_table(table, temporary))
            manifest["parts"].append({"file": name, "utterances": table.num_rows})
            atomic_write_bytes(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode())  # the part counts once listed
            bar.update(table.num_rows)
    return out_dir / MANIFEST


def embed_corpus(
    sources, out_dir, checkpoint=None, runtime: str = DEFAULT_RUNTIME, address: str | None = None, workers: int = 1,
    batch_size: int = 16, part_size: int = 256, progress: bool = True,
) -> Path:  # fmt: skip
    """Embed every recording of `sources` into Parquet parts under `out_dir` with `workers` Ray actors; returns the
    manifest. Utterances of finished parts are skipped (resume)."""
    from .assembly import load_encoder

    recordings = _recordings(sources)
    model = load_encoder(checkpoint, runtime).fingerprint  # the model's identity, and its files checked, before Ray starts
    job = {"job": "embed", "model": model}
    options = {"checkpoint": checkpoint, "runtime": runtime}
    return _run(_Embedder, options, job, recordings, out_dir, address, workers, batch_size, part_size, progress)


def diarize_corpus(
    sources, out_dir, checkpoint=None, runtime: str = DEFAULT_RUNTIME, config=None, overlap_detector=None, address: str | None = None,
    workers: int = 1, batch_size: int = 4, part_size: int = 64, progress: bool = True,
) -> Path:  # fmt: skip
    """Diarize every recording of `sources` into Parquet parts (`turns`: `diarize --json`'s list) under `out_dir` with
    `workers` Ray actors; returns the manifest. Utterances of finished parts are skipped (resume)."""
    from dataclasses import asdict

    from .assembly import load_encoder
    from .diarization.pipeline import DiarizationConfig

    recordings = _recordings(sources)
    config = asdict(config or DiarizationConfig())
    job = {"job": "diarize", "model": load_encoder(checkpoint, runtime).fingerprint, "config": config}
    options = {"checkpoint": checkpoint, "runtime": runtime, "config": config, "overlap_detector": overlap_detector}
    return _run(_Diarizer, options, job, recordings, out_dir, address, workers, batch_size, part_size, progress)


def _tables(out_dir):
    """The finished parts of `out_dir`, as pyarrow tables, in the order they landed."""
    import pyarrow.parquet as pq

    for part in json.loads((Path(out_dir) / MANIFEST).read_text())["parts"]:
        yield pq.read_table(Path(out_dir) / part["file"])


def read_corpus_embeddings(out_dir) -> tuple[list[str], np.ndarray]:
    """(utterance ids, embeddings) of every finished part of `out_dir`, refused recordings as NaN rows."""
    names, rows = [], []
    for table in _tables(out_dir):
        names += table["utterance_id"].to_pylist()
        rows += [np.asarray(vector, np.float32) for vector in table["embedding"].to_pylist()]
    return names, np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def read_corpus_turns(out_dir) -> dict[str, list[dict]]:
    """{utterance id: its turns ({start, end, speaker, recording}, as `diarize --json` writes them)} of `out_dir`."""
    return {
        uid: json.loads(turns)
        for table in _tables(out_dir)
        for uid, turns in zip(table["utterance_id"].to_pylist(), table["turns"].to_pylist())
    }
