"""Corpus embedding on a cluster engine: Ray Data batch inference, on this machine or a running Ray cluster.

`embed_corpus` streams the recordings of a corpus (folders, `wav.scp`, path lists: `data.corpus.named_recordings`)
through `workers` Ray actors, each holding one encoder (`assembly.load_encoder`, so the embeddings are exactly those
of `embed`), and writes what comes back as Parquet parts in the output folder (`utterance_id`, `path`, `embedding`,
`refused`), each part written atomically and listed in `manifest.json` as it lands. Run again, it skips every
utterance a finished part holds: an interrupted job resumes. `address=None` starts Ray on this machine; an address
(`ray://head:10001`, or `auto` on a cluster node) uses a running cluster, whose workers need the toolkit installed and
the audio at the same paths (a shared file system).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data.corpus import named_recordings
from .errors import ConfigError
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
        return {
            "utterance_id": batch["utterance_id"],
            "path": batch["path"],
            "embedding": list(vectors.astype(np.float32)),
            "refused": np.array([refused.get(path, "") for path in batch["path"]], dtype=object),
        }


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("corpus embedding on a cluster needs Ray Data: pip install 'ray[data]'") from None
    return ray


def _read_manifest(out_dir: Path, model: str) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "model": model, "parts": []}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("model") != model:
        raise ConfigError(f"{path}: embeddings of model {manifest.get('model')}, not {model}: use another output folder")
    return manifest


def finished_utterances(out_dir) -> set[str]:
    """The utterance ids the finished parts of `out_dir` hold."""
    import pyarrow.parquet as pq

    manifest_path = Path(out_dir) / MANIFEST
    if not manifest_path.is_file():
        return set()
    parts = json.loads(manifest_path.read_text())["parts"]
    return {
        uid for part in parts for uid in pq.read_table(Path(out_dir) / part["file"], columns=["utterance_id"])["utterance_id"].to_pylist()
    }


def embed_corpus(
    sources,
    out_dir,
    checkpoint=None,
    runtime: str = "keras",
    address: str | None = None,
    workers: int = 1,
    batch_size: int = 16,
    part_size: int = 256,
    progress: bool = True,
) -> Path:
    """Embed every recording of `sources` into Parquet parts under `out_dir` with `workers` Ray actors; returns the
    manifest. Utterances of finished parts are skipped (resume)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from .assembly import load_encoder

    ray = _require_ray()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_encoder(checkpoint, runtime).fingerprint  # the model's identity, and its files checked, before Ray starts
    manifest = _read_manifest(out_dir, model)
    done = finished_utterances(out_dir)
    recordings = [(name, str(path)) for name, path in named_recordings(sources) if name not in done]
    if not recordings:
        return out_dir / MANIFEST
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    dataset = ray.data.from_items([{"utterance_id": name, "path": path} for name, path in recordings])
    embedded = dataset.map_batches(
        _Embedder,
        fn_constructor_kwargs={"checkpoint": checkpoint, "runtime": runtime},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_format="numpy",
    )
    with tqdm(total=len(recordings), desc="embed corpus", unit="utt", disable=not progress) as bar:
        for batch in embedded.iter_batches(batch_size=part_size, batch_format="numpy"):
            table = pa.table(
                {
                    "utterance_id": pa.array(batch["utterance_id"].tolist()),
                    "path": pa.array(batch["path"].tolist()),
                    "embedding": pa.array([vector.tolist() for vector in batch["embedding"]], type=pa.list_(pa.float32())),
                    "refused": pa.array(batch["refused"].tolist()),
                }
            )
            name = f"part-{len(manifest['parts']):05d}.parquet"
            atomic_replace(out_dir / name, lambda temporary, table=table: pq.write_table(table, temporary))
            manifest["parts"].append({"file": name, "utterances": table.num_rows})
            atomic_write_bytes(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode())  # the part counts once listed
            bar.update(table.num_rows)
    return out_dir / MANIFEST


def read_corpus_embeddings(out_dir) -> tuple[list[str], np.ndarray]:
    """(utterance ids, embeddings) of every finished part of `out_dir`, refused recordings as NaN rows."""
    import pyarrow.parquet as pq

    manifest = json.loads((Path(out_dir) / MANIFEST).read_text())
    names, rows = [], []
    for part in manifest["parts"]:
        table = pq.read_table(Path(out_dir) / part["file"])
        names += table["utterance_id"].to_pylist()
        rows += [np.asarray(vector, np.float32) for vector in table["embedding"].to_pylist()]
    return names, np.stack(rows) if rows else np.zeros((0, 0), np.float32)
