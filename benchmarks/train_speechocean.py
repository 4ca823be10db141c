"""Reference pipeline on real speech: build-features, softmax, triplet, evaluated after each phase.

On ../shared/data/speechocean762: features of train/, softmax pre-training, triplet training, and after
each phase `eval-trials` on dev_trials.txt (62 unseen speakers) and `test-model` (closed set, held-out
utterances of the 125 training speakers). The classical MFCC + LDA floor is computed in the same run.
Training options come from the shipped recipes (recipes/speechocean762/{softmax,triplet}.yaml); flags
override the features and the epochs. Resumable: run it again with the same --working_dir and finished
phases are reused.

    python benchmarks/train_speechocean.py [--energies log] [--normalisation utterance] [--softmax_epochs N] [--triplet_epochs N]
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import asdict
from pathlib import Path

from baseline import classical_baseline
from common import ROOT, require_shared_data, write_result

from deep_speaker.config import load_recipe
from deep_speaker.data.cache import build_feature_cache
from deep_speaker.data.split import SpeakerFeatures
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.evaluation import closed_set_metrics, evaluate_trials, save_result
from deep_speaker.features import ENERGY_SCALES, NORMALISATIONS
from deep_speaker.tf.train import train_classifier, train_triplet

RECIPES = ROOT / "recipes" / "speechocean762"


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
    parser.add_argument("--working_dir", help="default: benchmarks/work/speechocean_<energies>_<normalisation>")
    parser.add_argument("--energies", choices=ENERGY_SCALES, help="filterbank energies (default: the recipe's; linear = the reference's)")
    parser.add_argument("--normalisation", choices=NORMALISATIONS, help="default: the recipe's; frame = the reference's")
    parser.add_argument("--softmax_recipe", default=str(RECIPES / "softmax.yaml"))
    parser.add_argument("--triplet_recipe", default=str(RECIPES / "triplet.yaml"))
    parser.add_argument("--softmax_epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--triplet_epochs", type=int, default=None, help="default: the recipe's")
    args = parser.parse_args()
    corpus = require_shared_data() / "speechocean762"
    chosen = {"energies": args.energies, "normalisation": args.normalisation}  # the recipes' features, then these
    phases = (
        ("softmax", train_classifier, load_recipe("classification", args.softmax_recipe, epochs=args.softmax_epochs, **chosen)),
        ("triplet", train_triplet, load_recipe("triplet", args.triplet_recipe, epochs=args.triplet_epochs, **chosen)),
    )
    features = phases[0][2].features.feature_config()
    name = f"{features.energies}_{features.normalisation}"
    working_dir = Path(args.working_dir or ROOT / "benchmarks" / "work" / f"speechocean_{name}")
    timings = {}

    start = time.perf_counter()
    print(build_feature_cache(corpus / "train", working_dir, features, progress=False))
    timings["build_mfcc_seconds"] = time.perf_counter() - start
    baseline = classical_baseline(corpus / "train", corpus / "dev", corpus / "dev_trials.txt")
    data = SpeakerFeatures(working_dir)

    results = {"features": asdict(features), **{f"{n}_config": c.to_dict() for n, _, c in phases}, "baseline": baseline}
    for phase, train, config in phases:
        start = time.perf_counter()
        best = train(working_dir, config, progress=False)
        seconds = time.perf_counter() - start
        log = epoch_log(working_dir / phase)
        results[phase] = {
            "checkpoint": str(best),
            "epochs": len(log),
            "seconds_per_epoch": sum(float(row["epoch_seconds"]) for row in log) / len(log),
            "train_seconds_this_run": seconds,
            **evaluate(best, corpus, data, ROOT / "benchmarks" / "results" / f"speechocean_{name}_{phase}_roc_det.png"),
        }
        print(
            f"{phase}: {len(log)} epochs, {results[phase]['seconds_per_epoch']:.0f} s/epoch; dev {results[phase]['dev']}; {results[phase]['test_model']}",
            flush=True,
        )
    results["timings"] = timings
    path = write_result(f"train_speechocean_{name}", results)
    s, t, b = results["softmax"]["dev"], results["triplet"]["dev"], baseline["mfcc_mean_std_lda_cosine"]
    print(
        f"train_speechocean ({args.energies} energies, {args.normalisation} normalisation, width {phases[0][2].model.width:g}): "
        f"dev EER softmax {100 * s['eer']:.2f} % (minDCF0.01 {s['min_dcf_p0.01']:.3f}), "
        f"triplet {100 * t['eer']:.2f} % (minDCF0.01 {t['min_dcf_p0.01']:.3f}); MFCC+LDA floor {100 * b['eer']:.2f} %; "
        f"{results['softmax']['seconds_per_epoch']:.0f} / {results['triplet']['seconds_per_epoch']:.0f} s per epoch; "
        f"test-model triplet: {results['triplet']['test_model']} [{path.name}]"
    )


if __name__ == "__main__":
    main()
