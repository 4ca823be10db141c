"""Training input at scale: peak memory and step time as the corpus grows 1x, 5x, 20x.

The speechocean762 training speakers are sharded once (`build-shards`), then replicated: the 5x and 20x corpora
list every training shard 5 / 20 times (hard links, so no extra disk), as a corpus that size would be read. Each
(input, size) trains ResCNN (`--width`) for `--steps` steps in a fresh process, in alternating rounds:
- `shards`: the tf.data stream (`run.input: shards`): memory must stay flat (<= +10 %), step time must not grow;
- `cache`: the in-memory feature cache (`run.input: cache`, every utterance loaded), at 1x and 5x, for contrast.
Step time: median of the steps after the first `--warmup`; peak memory: the process's maximum resident set.
Prints one line, writes benchmarks/results/scale.json.

    python benchmarks/scale.py [--steps 40] [--rounds 2] [--width 0.25] [--batch_size 32]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import ROOT, require_shared_data, write_result

WORK = ROOT / "benchmarks" / "work" / "scale"
SIZES = {"shards": (1, 5, 20), "cache": (1, 5)}


def prepare(train_audio: Path) -> None:
    """1x shards and feature cache of the training speakers, and their 5x / 20x replicas."""
    from deep_speaker.data.cache import build_feature_cache, read_manifest
    from deep_speaker.fileio import atomic_write_bytes, atomic_write_csv
    from deep_speaker.tf.shards import INDEX, SHARDS_DIR, build_shards

    base = WORK / "x1"
    build_shards(train_audio, base, utterances_per_file=100)
    build_feature_cache(train_audio, base)
    index = json.loads((base / SHARDS_DIR / INDEX).read_text())
    for factor in (5, 20):
        target = WORK / f"x{factor}"
        (target / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "features.json", target / "features.json")
        names = []
        for copy in range(factor):
            for name in index["files"]["train"]:
                link = target / SHARDS_DIR / f"copy{copy:02d}-{name}"
                if not link.exists():
                    os.link(base / SHARDS_DIR / name, link)
                names.append(link.name)
        for name in index["files"]["validation"]:
            if not (target / SHARDS_DIR / name).exists():
                os.link(base / SHARDS_DIR / name, target / SHARDS_DIR / name)
        replica = {**index, "files": {"train": names, "validation": index["files"]["validation"]}}
        replica["utterances"] = {"train": index["utterances"]["train"] * factor, "validation": index["utterances"]["validation"]}
        atomic_write_bytes(target / SHARDS_DIR / INDEX, json.dumps(replica).encode())
        if factor in SIZES["cache"]:  # the cache's manifest lists each utterance `factor` times (each loaded separately)
            rows = [
                (f"{e.utterance_id}#{copy}", e.speaker, str(e.audio_path), str(e.feature_path.resolve()), e.num_frames)
                for copy in range(factor)
                for e in read_manifest(base)
            ]
            atomic_write_csv(target / "manifest.csv", ("utterance_id", "speaker", "audio_path", "feature_path", "num_frames"), rows)


def child(args) -> None:
    """One measurement: train for --steps steps on --input of --corpus, print JSON (step times, peak RSS)."""
    import resource
    import time

    import keras

    from deep_speaker.config import load_recipe
    from deep_speaker.data.batches import ClassificationBatches
    from deep_speaker.data.split import SpeakerFeatures
    from deep_speaker.losses import LOSSES
    from deep_speaker.models import build_backbone
    from deep_speaker.tf.distribute import distributed_stream, strategy
    from deep_speaker.tf.shards import ShardedCorpus

    recipe = load_recipe(
        "classification", input=args.input, batch_size=args.batch_size, steps_per_epoch=args.steps, epochs=1, width=args.width
    )
    active = strategy(recipe.run.strategy)
    if args.input == "shards":
        data = ShardedCorpus(args.corpus)
        batches = distributed_stream(active, 1, lambda i: data.stream(recipe.run, 0), recipe.run.batch_size)
    else:
        data = SpeakerFeatures(args.corpus, recipe.run.validation_fraction)
        batches = ClassificationBatches(data, recipe.run)
    backbone = build_backbone("rescnn", data.feature_config.num_fbanks, width=args.width)
    inputs = keras.Input((recipe.run.num_frames, data.feature_config.num_fbanks))
    model = keras.Model(inputs, LOSSES["softmax"].output(data.num_classes)(backbone(inputs)["embedding"]))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ends = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    streamed = args.input == "shards"
    model.fit(batches, epochs=1, steps_per_epoch=args.steps if streamed else None, shuffle=not streamed, verbose=0, callbacks=[StepTimer()])
    steps = [b - a for a, b in zip(ends, ends[1:])][args.warmup :]
    print(json.dumps({"step_seconds": statistics.median(steps), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(input_name: str, factor: int, args) -> dict:
    command = [sys.executable, __file__, "--child", "--input", input_name, "--corpus", str(WORK / f"x{factor}")]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--width", str(args.width), "--batch_size", str(args.batch_size)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{input_name} x{factor} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the step time")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    prepare(require_shared_data() / "speechocean762" / "train")
    runs = {(name, factor): [] for name, factors in SIZES.items() for factor in factors}
    for _ in range(args.rounds):
        for key in runs:
            runs[key].append(measure(*key, args))
            print(key, runs[key][-1], flush=True)
    table = {
        f"{name}_x{factor}": {
            "step_seconds": round(statistics.median(r["step_seconds"] for r in results), 4),
            "peak_mb": round(max(r["peak_mb"] for r in results), 1),
        }
        for (name, factor), results in runs.items()
    }
    shards_memory = table["shards_x20"]["peak_mb"] / table["shards_x1"]["peak_mb"]
    shards_time = table["shards_x20"]["step_seconds"] / table["shards_x1"]["step_seconds"]
    cache_memory = table["cache_x5"]["peak_mb"] / table["cache_x1"]["peak_mb"]
    result = {
        "command": "python benchmarks/scale.py " + " ".join(a for a in sys.argv[1:]),
        "settings": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "width": args.width, "batch_size": args.batch_size},
        "table": table,
        "shards_memory_20x_over_1x": round(shards_memory, 3),
        "shards_step_time_20x_over_1x": round(shards_time, 3),
        "cache_memory_5x_over_1x": round(cache_memory, 3),
        "memory_flat": shards_memory <= 1.10,
        "step_time_flat": shards_time <= 1.10,
    }
    path = write_result("scale", result)
    print(
        f"scale: shards peak {table['shards_x1']['peak_mb']:.0f} / {table['shards_x5']['peak_mb']:.0f} / {table['shards_x20']['peak_mb']:.0f} MB "
        f"at 1x/5x/20x ({shards_memory:.2f}x), step {table['shards_x1']['step_seconds'] * 1000:.0f} / {table['shards_x20']['step_seconds'] * 1000:.0f} ms "
        f"({shards_time:.2f}x); in-memory cache {table['cache_x1']['peak_mb']:.0f} -> {table['cache_x5']['peak_mb']:.0f} MB at 5x -> {path}"
    )


if __name__ == "__main__":
    main()
