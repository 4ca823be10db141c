"""Corpus embedding on Ray against plain `embed`, the same files, alternating rounds in one process.

Per round: the default system embeds `--files` speechocean762 dev recordings once in this process (`embed_many`, the
path `embed` takes) and once through `embed-corpus` on a local Ray instance with one worker (`cluster.embed_corpus`).
Ray's rate is measured from its first Parquet part to its last (the actor's start-up, one model load, is reported
apart), so the ratio is the engine's per-file overhead. Also: whether the embeddings are identical, and a projection
of cluster throughput from the measured per-worker rate.

    python benchmarks/cluster_embed.py [--files 240] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time

import numpy as np
import soundfile as sf
from common import ROOT, require_shared_data, write_result

from deep_speaker.assembly import load_encoder
from deep_speaker.cluster import MANIFEST, embed_corpus, read_corpus_embeddings
from deep_speaker.data.corpus import audio_files

WORK = ROOT / "benchmarks" / "work" / "cluster_embed"
PART = 16


def ray_round(paths, out) -> dict:
    """Embed `paths` on Ray with one worker, timing when each part lands."""
    shutil.rmtree(out, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "list.txt").write_text("".join(f"{path}\n" for path in paths))
    landed, started = [], time.perf_counter()

    def watch():
        seen = 0
        while seen < len(paths):
            if (out / MANIFEST).is_file():
                count = sum(part["utterances"] for part in json.loads((out / MANIFEST).read_text())["parts"])
                if count > seen:
                    landed.append((time.perf_counter(), count))
                    seen = count
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    embed_corpus([WORK / "list.txt"], out, workers=1, batch_size=PART, part_size=PART, progress=False)
    watcher.join(timeout=5)
    (first_time, first_count), (last_time, last_count) = landed[0], landed[-1]
    return {
        "seconds": time.perf_counter() - started,
        "start_up_seconds": first_time - started,
        "files_per_second": (last_count - first_count) / (last_time - first_time),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import ray

    paths = audio_files(require_shared_data() / "speechocean762" / "dev")[: args.files]
    mean_seconds = float(np.mean([sf.info(str(path)).duration for path in paths]))
    started = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    encoder = load_encoder()
    rounds = []
    for number in range(args.rounds):
        started = time.perf_counter()
        plain = encoder.embed_many(paths)
        plain_rate = len(paths) / (time.perf_counter() - started)
        on_ray = ray_round(paths, WORK / f"round{number}")
        names, vectors = read_corpus_embeddings(WORK / f"round{number}")
        order = [names.index(str(path)) for path in paths]
        rounds.append(
            {"plain_files_per_second": plain_rate, "ray": on_ray, "max_abs_difference": float(np.max(np.abs(vectors[order] - plain)))}
        )
        print(
            f"  round {number}: plain {plain_rate:.2f} files/s, Ray (1 worker) {on_ray['files_per_second']:.2f} files/s after a "
            f"{on_ray['start_up_seconds']:.1f} s start-up; max |difference| {rounds[-1]['max_abs_difference']:.1e}",
            flush=True,
        )
    ray.shutdown()
    ratio = float(np.median([r["ray"]["files_per_second"] / r["plain_files_per_second"] for r in rounds]))
    per_worker = float(np.median([r["ray"]["files_per_second"] for r in rounds]))
    pairs = ", ".join(f"{r['ray']['files_per_second']:.2f} vs {r['plain_files_per_second']:.2f}" for r in rounds)
    path = write_result(
        "cluster_embed",
        {
            "files": len(paths),
            "mean_file_seconds": mean_seconds,
            "ray_init_seconds": ray_start,
            "rounds": rounds,
            "ray_over_plain": ratio,
            "per_worker_files_per_second": per_worker,
        },
    )
    print(
        f"cluster_embed: Ray with one worker at {100 * ratio:.0f} % of plain embed's rate ({per_worker:.2f} files/s per worker, "
        f"{len(paths)} dev files, rounds {pairs}); "
        f"embeddings identical to {max(r['max_abs_difference'] for r in rounds):.0e}; Ray starts in {ray_start:.1f} s; "
        f"projected: a worker with this machine's 2 cores embeds {per_worker * mean_seconds:.0f} s of audio a second ({mean_seconds:.1f} s "
        f"files), so 16 such workers about {per_worker * mean_seconds * 16:.0f} h of audio an hour [{path.name}]"
    )


if __name__ == "__main__":
    main()
