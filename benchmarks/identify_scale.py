"""Identification at scale: enrol 10^3 to 10^6 speakers, then identify.

Each store holds random unit vectors (synthetic speakers) plus the real enrolments of speechocean762 dev's 62
speakers (the mean of their first two recordings, by the default system); the queries are those speakers' other
recordings. Per size: enrolment rate (`SpeakerRegistry.store_embeddings`, 10,000 per transaction), store size on
disk, the time to open the store with its index (first open: build; second, in a fresh cache: the persisted graph
plus the changes since), the index's memory, identification latency p50/p99 excluding the embedding (candidates +
exact cosine re-scoring + ranking, as `Verifier.identify` does), and top-1 / top-5 agreement with the exact scan of
every stored embedding. At `--compare` sizes, FAISS's HNSW (if installed) is measured beside usearch on the same
vectors: build time, latency and top-1 recall.

With `--postgres URL` (a running PostgreSQL server with pgvector, e.g. `postgresql://postgres@127.0.0.1:5432`) the
same sizes are also measured in the shared store (`postgres_store.PostgresRegistry`: pgvector's HNSW index), each in a
new database: enrolment rate, database size, latency and agreement, through the same `candidates` call.

    python benchmarks/identify_scale.py [--sizes 1000,10000,100000,1000000] [--queries 300] [--compare 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time

import numpy as np
from common import ROOT, require_shared_data, write_result

from deep_speaker import enrol
from deep_speaker.enrol import SpeakerRegistry
from deep_speaker.fileio import atomic_save_npy
from deep_speaker.speaker_index import GRAPH_FROM, GraphIndex

WORK = ROOT / "benchmarks" / "work" / "identify_scale"
BATCH = 10_000


def real_speakers(encoder) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(names, enrolment embeddings, query embeddings, query speaker index) of dev, embedded once and cached."""
    from deep_speaker.data.corpus import recordings_by_speaker

    cache = WORK / f"dev_{encoder.fingerprint}.npy"
    by_speaker = recordings_by_speaker(require_shared_data() / "speechocean762" / "dev")
    names = sorted(by_speaker)
    if not cache.is_file():
        atomic_save_npy(cache, encoder.embed_many([path for name in names for path in by_speaker[name]], progress=True))
    vectors, counts = np.load(cache), [len(by_speaker[name]) for name in names]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    enrolled = np.stack([unit[s : s + 2].mean(axis=0) for s in starts])
    queries = [(i, unit[j]) for i, (s, c) in enumerate(zip(starts, counts)) for j in range(s + 2, s + c)]
    return (
        names,
        enrolled / np.linalg.norm(enrolled, axis=1, keepdims=True),
        np.stack([q for _, q in queries]),
        np.array([i for i, _ in queries]),
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, encoder, real: tuple, queries: np.ndarray, rng) -> dict:
    folder = WORK / f"store_{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "speakers.db"
    with SpeakerRegistry(path, encoder) as registry:
        enrol_seconds = enrol_speakers(registry, size, real, rng)
    result = {"speakers": size, "enrolments_per_second": size / enrol_seconds, "store_mb": path.stat().st_size / 2**20}
    timings = {}
    for attempt in ("first_open_seconds", "reopen_seconds"):
        enrol._INDEXES.clear()
        before = rss_mb()
        started = time.perf_counter()
        registry = SpeakerRegistry(path, encoder)
        state = registry._synced_index()
        timings[attempt] = time.perf_counter() - started
        result["index"] = type(state.index).__name__
        result["index_memory_mb_growth"] = rss_mb() - before
        if attempt == "first_open_seconds":
            registry.close()
    result.update(timings)
    result.update(identify_all(registry, queries))
    registry.close()
    print(
        f"  {size:>9,} speakers: {result['index']}, enrol {result['enrolments_per_second']:,.0f}/s, store {result['store_mb']:.0f} MB, "
        f"open {result['first_open_seconds']:.2f} s (again {result['reopen_seconds']:.2f} s), identify p50 {result['p50_ms']:.2f} ms "
        f"p99 {result['p99_ms']:.2f} ms, top-1 {100 * result['top1_agreement']:.2f} %, top-5 {100 * result['top5_agreement']:.2f} %",
        flush=True,
    )
    return result


def enrol_speakers(registry, size: int, real: tuple, rng) -> float:
    """Enrol dev's real speakers and `size` minus them synthetic ones; the seconds it took."""
    names, enrolled = real[0], real[1]
    synthetic = size - len(names)
    started = time.perf_counter()
    registry.store_embeddings([(name, vector, 2) for name, vector in zip(names, enrolled)])
    for first in range(0, synthetic, BATCH):
        block = rng.standard_normal((min(BATCH, synthetic - first), registry.encoder.embedding_dim)).astype(np.float32)
        registry.store_embeddings([(f"synthetic{first + i}", vector, 1) for i, vector in enumerate(block)])
    return time.perf_counter() - started


def identify_all(registry, queries: np.ndarray) -> dict:
    """Latency p50/p99 of candidates + exact re-scoring + ranking (as `Verifier.identify`), and top-1 / top-5
    agreement with the exact scan of every stored embedding."""
    all_names, matrix = registry.embeddings()
    latencies, top1, top5 = [], [], []
    for query in queries:
        started = time.perf_counter()
        candidates, vectors = registry.candidates(query, 5)
        scores = vectors @ query
        ranked = [candidates[i] for i in np.argsort(-scores)[:5]]
        latencies.append(time.perf_counter() - started)
        exact = np.argsort(-(matrix @ query))[:5]
        top1.append(ranked[0] == all_names[exact[0]])
        top5.append(len(set(ranked) & {all_names[i] for i in exact}) / 5)
    return {
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "top1_agreement": float(np.mean(top1)),
        "top5_agreement": float(np.mean(top5)),
    }


def measure_postgres(server: str, size: int, encoder, real: tuple, queries: np.ndarray, rng) -> dict:
    """The same measures in a new database of the PostgreSQL server `server`."""
    import psycopg

    from deep_speaker.postgres_store import PostgresRegistry

    database = f"identify_scale_{size}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database}")
        connection.execute(f"CREATE DATABASE {database}")
    with PostgresRegistry(f"{server}/{database}", encoder) as registry:
        seconds = enrol_speakers(registry, size, real, rng)
        result = {"speakers": size, "enrolments_per_second": size / seconds}
        result["database_mb"] = registry.connection.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
        registry.candidates(queries[0], 5)  # warm
        result.update(identify_all(registry, queries))
    print(
        f"  postgresql {size:>9,} speakers: enrol {result['enrolments_per_second']:,.0f}/s, database {result['database_mb']:.0f} MB, "
        f"identify p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms, top-1 {100 * result['top1_agreement']:.2f} %",
        flush=True,
    )
    return result


def compare_libraries(size: int, dim: int, queries: np.ndarray, rng) -> dict:
    """usearch (the toolkit's graph: int8) against FAISS's HNSW (float32) on the same random vectors, both with 16 links
    per node and the same search depths: build, latency, top-1 recall."""
    vectors = rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(size, len(queries), replace=False)] + 0.3 * queries[:, :dim]
    truth = np.argmax(queries @ vectors.T, axis=1)
    found = {}
    started = time.perf_counter()
    graph = GraphIndex(dim)
    graph.add(np.arange(size), vectors)
    build = time.perf_counter() - started
    search = [graph.search(q, 5)[0] for q in queries[:5]]
    started = time.perf_counter()
    search = [graph.search(q, 5)[0] for q in queries]
    found["usearch"] = {
        "build_seconds": build,
        "p50_ms": 1000 * (time.perf_counter() - started) / len(queries),
        "top1": float(np.mean(np.array(search) == truth)),
    }
    try:
        import faiss
    except ImportError:
        found["faiss"] = "not installed (pip install faiss-cpu)"
        return found
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction, index.hnsw.efSearch = 64, 128  # as the toolkit's graph
    index.add(vectors)
    build = time.perf_counter() - started
    started = time.perf_counter()
    search = [index.search(q[None], 5)[1][0][0] for q in queries]
    found["faiss_hnsw"] = {
        "build_seconds": build,
        "p50_ms": 1000 * (time.perf_counter() - started) / len(queries),
        "top1": float(np.mean(np.array(search) == truth)),
    }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--compare", type=int, default=100_000, help="size of the usearch / FAISS comparison (0: none)")
    parser.add_argument("--postgres", help="also measure the PostgreSQL store on this server (postgresql://USER@HOST:PORT)")
    args = parser.parse_args()
    from deep_speaker.assembly import load_encoder

    encoder = load_encoder()
    real = real_speakers(encoder)
    rng = np.random.default_rng(0)
    queries = real[2][rng.choice(len(real[2]), min(args.queries, len(real[2])), replace=False)]
    sizes = [int(size) for size in args.sizes.split(",")]
    results = [measure(size, encoder, real, queries, rng) for size in sizes]
    postgres = [measure_postgres(args.postgres, size, encoder, real, queries, rng) for size in sizes] if args.postgres else None
    comparison = compare_libraries(args.compare, encoder.embedding_dim, queries, rng) if args.compare else None
    path = write_result(
        "identify_scale" if args.postgres is None else "identify_scale_postgres",
        {"graph_from": GRAPH_FROM, "queries": len(queries), "sizes": results, "postgresql": postgres, "libraries": comparison},
    )
    largest = results[-1]
    print(
        f"identify_scale: {largest['speakers']:,} speakers p50 {largest['p50_ms']:.2f} ms p99 {largest['p99_ms']:.2f} ms, top-1 agreement "
        f"{100 * largest['top1_agreement']:.2f} %, reopen {largest['reopen_seconds']:.2f} s; "
        + ", ".join(f"{r['speakers']:,}: {r['p50_ms']:.2f} ms" for r in results)
        + (
            "; postgresql: "
            + ", ".join(f"{r['speakers']:,}: {r['p50_ms']:.2f} ms, top-1 {100 * r['top1_agreement']:.1f} %" for r in postgres)
            if postgres
            else ""
        )
        + (f"; libraries at {args.compare:,}: {comparison}" if comparison else "")
        + f" [{path.name}]"
    )


if __name__ == "__main__":
    main()
