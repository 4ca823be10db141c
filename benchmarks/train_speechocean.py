"""Reference pipeline on real speech: build-mfcc, softmax, triplet, evaluated after each phase.

On ../shared/data/speechocean762: features of train/, softmax pre-training, triplet training, and after
each phase `eval-trials` on dev_trials.txt (62 unseen speakers) and `test-model` (closed set, held-out
utterances of the 125 training speakers). The classical MFCC + LDA floor is computed in the same run.
Resumable: run it again with the same --working_dir and finished phases are reused.

    python benchmarks/train_speechocean.py [--width 0.25] [--softmax_epochs 20] [--triplet_epochs 10]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from baseline import classical_baseline
from common import ROOT, require_shared_data, write_result
from deep_speaker.cache import build_feature_cache
from deep_speaker.config import SoftmaxConfig, TripletConfig
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.evaluation import closed_set_metrics, evaluate_trials, save_result
from deep_speaker.training import SpeakerFeatures, train_softmax, train_triplet


def epoch_log(run_dir: Path) -> list[dict]:
    """Last logged row of each epoch (a resumed run appends; the newest row of an epoch wins)."""
    with (run_dir / "training.csv").open() as handle:
        return list({row["epoch"]: row for row in csv.DictReader(handle)}.values())


def evaluate(checkpoint: Path, corpus: Path, data: SpeakerFeatures, plot: Path) -> dict:
    encoder = SpeakerEncoder(checkpoint)
    result = evaluate_trials(encoder, corpus / "dev_trials.txt", corpus / "dev", progress=False)
    save_result(result, plot_path=plot)
    closed = closed_set_metrics(encoder.embed_features([data.features[i] for i in data.validation]), data.labels[data.validation])
    return {"dev": result.summary(), "test_model": str(closed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--working_dir", default=str(ROOT / "benchmarks" / "work" / "speechocean"))
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--softmax_epochs", type=int, default=20)
    parser.add_argument("--triplet_epochs", type=int, default=10)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    args = parser.parse_args()
    corpus = require_shared_data() / "speechocean762"
    working_dir = Path(args.working_dir)
    timings = {}

    start = time.perf_counter()
    print(build_feature_cache(corpus / "train", working_dir, progress=False))
    timings["build_mfcc_seconds"] = time.perf_counter() - start
    baseline = classical_baseline(corpus / "train", corpus / "dev", corpus / "dev_trials.txt")
    data = SpeakerFeatures(working_dir)

    results = {"width": args.width, "steps_per_epoch": args.steps_per_epoch, "baseline": baseline}
    phases = (
        ("softmax", train_softmax, SoftmaxConfig(width=args.width, epochs=args.softmax_epochs, steps_per_epoch=args.steps_per_epoch)),
        ("triplet", train_triplet, TripletConfig(width=args.width, epochs=args.triplet_epochs, steps_per_epoch=args.steps_per_epoch)),
    )
    for name, train, config in phases:
        start = time.perf_counter()
        best = train(working_dir, config, progress=False)
        seconds = time.perf_counter() - start
        log = epoch_log(working_dir / name)
        epochs = len(log)
        results[name] = {
            "checkpoint": str(best),
            "epochs": epochs,
            "seconds_per_epoch": sum(float(row["epoch_seconds"]) for row in log) / epochs,
            "train_seconds_this_run": seconds,
            **evaluate(best, corpus, data, ROOT / "benchmarks" / "results" / f"speechocean_{name}_roc_det.png"),
        }
        print(f"{name}: {epochs} epochs, {results[name]['seconds_per_epoch']:.0f} s/epoch; dev {results[name]['dev']}; {results[name]['test_model']}", flush=True)
    results["timings"] = timings
    path = write_result(f"train_speechocean_w{args.width:g}", results)
    s, t, b = results["softmax"]["dev"], results["triplet"]["dev"], baseline["mfcc_mean_std_lda_cosine"]
    print(
        f"train_speechocean (width {args.width:g}): dev EER softmax {100 * s['eer']:.2f} % (minDCF0.01 {s['min_dcf_p0.01']:.3f}), "
        f"triplet {100 * t['eer']:.2f} % (minDCF0.01 {t['min_dcf_p0.01']:.3f}); MFCC+LDA floor {100 * b['eer']:.2f} %; "
        f"{results['softmax']['seconds_per_epoch']:.0f} / {results['triplet']['seconds_per_epoch']:.0f} s per epoch; "
        f"test-model triplet: {results['triplet']['test_model']} [{path.name}]"
    )


if __name__ == "__main__":
    main()
