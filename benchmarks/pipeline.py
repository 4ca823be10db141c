"""Does the input pipeline starve the model? Softmax training steps fed by our batch generators against the
same number of steps on ready-made arrays, in alternating rounds in one process:
- cached: random crops of in-memory cached features;
- augmented: waveform crops, speed perturbation, rooms, noise (files, babble, coloured), gain, codecs, then
  features, prepared by `--workers` threads while the model trains;
- copies: crops of the cache plus its offline augmented copies (`augment-cache --copies 4 --speed_perturbation`,
  built first if missing; its build time is reported).

    python benchmarks/pipeline.py [--width 0.25] [--steps 30] [--workers 2]    # target: ratios <= 1.15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
from common import ROOT, require_shared_data, write_result

from deep_speaker.config import load_recipe
from deep_speaker.data.augment import SPEEDS, WaveformAugmentation, read_clips
from deep_speaker.data.batches import AugmentedBatches, ClassificationBatches
from deep_speaker.data.cache import build_feature_cache
from deep_speaker.data.copies import COPIES_MANIFEST, build_augmented_copies
from deep_speaker.data.split import SpeakerFeatures, SpeakerWaveforms
from deep_speaker.models import build_backbone


def timed_fit(model, data, steps: int, **kwargs) -> float:
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0, **kwargs)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="threads preparing augmented batches")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--working_dir", default=str(ROOT / "benchmarks" / "work" / "speechocean"))
    args = parser.parse_args()
    shared = require_shared_data()
    build_feature_cache(shared / "speechocean762" / "train", args.working_dir, progress=False)
    data = SpeakerFeatures(args.working_dir)
    config = load_recipe("classification", width=args.width, steps_per_epoch=args.steps).run
    augmented = AugmentedBatches(
        data,
        SpeakerWaveforms(data, progress=False),
        config,
        WaveformAugmentation(),
        SPEEDS,
        read_clips(sorted((shared / "noise").glob("*.flac"))),
        read_clips(sorted((shared / "rir").glob("*.flac"))),
        spec_augment=True,
        workers=args.workers,
    )
    start = time.perf_counter()
    if not (Path(args.working_dir) / COPIES_MANIFEST).is_file():
        build_augmented_copies(
            args.working_dir, 4, WaveformAugmentation(), SPEEDS, str(shared / "noise"), str(shared / "rir"), progress=False
        )
    copies_seconds = time.perf_counter() - start
    with_copies = ClassificationBatches(SpeakerFeatures(args.working_dir, augmented_copies=True), config, augment=True)
    backbone = build_backbone("rescnn", width=args.width, dropout=0.5)
    model = keras.Model(backbone.input, keras.layers.Dense(augmented.num_classes, activation="softmax")(backbone.output["embedding"]))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    batches = ClassificationBatches(data, config)
    arrays = [batches[i] for i in range(args.steps)]
    x, y = np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])
    model.fit(x[: 2 * config.batch_size], y[: 2 * config.batch_size], batch_size=config.batch_size, verbose=0)
    results = {"in_memory": [], "cached": [], "augmented": [], "copies": []}
    for _ in range(args.rounds):
        results["in_memory"].append(timed_fit(model, x, args.steps, y=y, batch_size=config.batch_size, shuffle=False))
        results["cached"].append(timed_fit(model, batches, args.steps))
        results["augmented"].append(timed_fit(model, augmented, args.steps))
        results["copies"].append(timed_fit(model, with_copies, args.steps))
    best = {name: min(times) for name, times in results.items()}
    ratios = {name: best[name] / best["in_memory"] for name in ("cached", "augmented", "copies")}
    path = write_result(
        "pipeline",
        {
            "width": args.width,
            "steps": args.steps,
            "workers": args.workers,
            "seconds_per_step": best,
            "runs": results,
            "ratio": ratios,
            "copies_build_seconds": copies_seconds,
        },
    )
    print(
        f"pipeline: in-memory arrays {best['in_memory']:.3f} s/step; cached crops {best['cached']:.3f} (ratio {ratios['cached']:.3f}); "
        f"full waveform augmentation with {args.workers} threads {best['augmented']:.3f} (ratio {ratios['augmented']:.3f}); "
        f"offline augmented copies + masking {best['copies']:.3f} (ratio {ratios['copies']:.3f}, copies built in {copies_seconds:.0f} s); target <= 1.15 [{path.name}]"
    )


if __name__ == "__main__":
    main()
