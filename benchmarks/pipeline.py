"""Does the input pipeline starve the model? Softmax training steps fed by our batch generator
(random crops of in-memory features) against the same number of steps on ready-made arrays.

    python benchmarks/pipeline.py [--width 0.25] [--steps 30]    # target: ratio <= 1.15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import ROOT, require_shared_data, write_result
import keras

from deep_speaker.config import load_recipe
from deep_speaker.data.batches import ClassificationBatches
from deep_speaker.data.cache import build_feature_cache
from deep_speaker.data.split import SpeakerFeatures
from deep_speaker.models import build_backbone


def timed_fit(model, data, steps: int, **kwargs) -> float:
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0, **kwargs)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--working_dir", default=str(ROOT / "benchmarks" / "work" / "speechocean"))
    args = parser.parse_args()
    build_feature_cache(require_shared_data() / "speechocean762" / "train", args.working_dir, progress=False)
    data = SpeakerFeatures(args.working_dir)
    config = load_recipe("classification", width=args.width, steps_per_epoch=args.steps).run
    backbone = build_backbone("rescnn", width=args.width, dropout=0.5)
    model = keras.Model(backbone.input, keras.layers.Dense(len(data.speakers), activation="softmax")(backbone.output["embedding"]))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    batches = ClassificationBatches(data, config)
    arrays = [batches[i] for i in range(args.steps)]
    x, y = np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])
    model.fit(x[: 2 * config.batch_size], y[: 2 * config.batch_size], batch_size=config.batch_size, verbose=0)
    results = {"in_memory": [], "pipeline": []}
    for _ in range(2):
        results["in_memory"].append(timed_fit(model, x, args.steps, y=y, batch_size=config.batch_size, shuffle=False))
        results["pipeline"].append(timed_fit(model, batches, args.steps))
    in_memory, pipeline = min(results["in_memory"]), min(results["pipeline"])
    path = write_result("pipeline", {"width": args.width, "steps": args.steps, "seconds_per_step": {"in_memory": in_memory, "pipeline": pipeline}, "ratio": pipeline / in_memory})
    print(f"pipeline: {pipeline:.3f} s/step with our batches vs {in_memory:.3f} s/step on in-memory arrays: ratio {pipeline / in_memory:.3f} (target <= 1.15) [{path.name}]")


if __name__ == "__main__":
    main()
