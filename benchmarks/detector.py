"""Spoof detector, leave one attack family out: EER on families never seen in training, and on seen ones.

The spoof corpus comes from `make-spoofs` on the training speakers (see the README). For each family F a detector
is trained without F (`train-detector --held_out F`); its EER is measured on the validation speakers' genuine
recordings (never trained on) against F's spoofs (unseen family) and against the other families' spoofs of the
validation speakers (seen families). A detector trained on every family gives the seen-family EER and the gate's
false rejections of genuine dev recordings at its threshold (1 % of the validation speakers' genuine recordings).
The detectors are trained under benchmarks/work/detector/<families>/<epochs>x<steps>/ (a corpus with other families
or another schedule gets fresh runs; an interrupted benchmark resumes). Prints one line, writes
benchmarks/results/<name>.json (default detector).

    python benchmarks/detector.py --manifest wd/spoofs/manifest.csv [--epochs 15] [--steps 40] [--held_out none,again,...] [--name detector]
"""

import argparse
import sys
import time

import numpy as np
from common import ROOT, require_shared_data, write_result


def main() -> None:
    from deep_speaker.adversarial.detector import SpoofDetector
    from deep_speaker.adversarial.spoofs import read_manifest
    from deep_speaker.config import load_recipe
    from deep_speaker.data.detection import validation_speakers
    from deep_speaker.scoring.metrics import compute_eer
    from deep_speaker.tf.train import train_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dev_files", type=int, default=200, help="genuine dev recordings for the gate's false rejections")
    parser.add_argument(
        "--held_out", help="comma-separated: only these leave-one-out runs ('none': all families seen; default: every family and none)"
    )
    parser.add_argument("--name", default="detector", help="the results file's name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    rows = read_manifest(args.manifest)
    families = sorted({family for _, _, family in rows} - {"genuine"})
    runs = args.held_out.split(",") if args.held_out else ["none", *families]
    if "none" not in runs or set(runs) - {"none", *families}:
        parser.error(f"--held_out: families of the manifest ({', '.join(families)}) or none, and none among them (the gate)")
    recipe = load_recipe("detector", epochs=args.epochs, steps_per_epoch=args.steps)
    work = ROOT / "benchmarks" / "work" / "detector" / "-".join(families) / f"{args.epochs}x{args.steps}"
    held_speakers = validation_speakers(rows, recipe.run.validation_fraction, recipe.run.seed)  # the split training uses

    def eer(detector, positives, negatives):
        spoof = [detector.score(p) for p in positives]
        genuine = [detector.score(p) for p in negatives]
        return float(compute_eer(np.array(spoof), np.array(genuine))[0])

    genuine_validation = [p for p, s, f in rows if f == "genuine" and s in held_speakers]
    results = {}
    for held_out in runs:
        started = time.perf_counter()
        best = train_detector(
            work, args.manifest, recipe, held_out=() if held_out == "none" else (held_out,), progress=False, run_name=f"without_{held_out}"
        )
        detector = SpoofDetector(best)
        entry = {"training_seconds": round(time.perf_counter() - started, 1)}
        if held_out != "none":
            entry["unseen_eer"] = eer(detector, [p for p, s, f in rows if f == held_out], genuine_validation)
        seen = [p for p, s, f in rows if f not in ("genuine", held_out) and s in held_speakers]
        entry["seen_eer"] = eer(detector, seen, genuine_validation)
        results[held_out] = entry
    dev = sorted((require_shared_data() / "speechocean762" / "dev").rglob("*.flac"))[:: max(1, 496 // args.dev_files)][: args.dev_files]
    gate_path = work / "without_none" / "best.keras"
    gate = SpoofDetector(gate_path)
    rejected = float(np.mean([gate(p) is not None for p in dev]))
    unseen = {f: results[f]["unseen_eer"] for f in runs if f != "none"}
    mean_unseen = float(np.mean(list(unseen.values()))) if unseen else None
    path = write_result(
        args.name,
        {
            "command": "python benchmarks/detector.py " + " ".join(sys.argv[1:]),
            "gate": str(gate_path.relative_to(ROOT)),
            "families": families,
            "per_held_out_family": results,
            "mean_unseen_eer": mean_unseen,
            "all_families_seen_eer": results["none"]["seen_eer"],
            "dev_genuine_false_rejection": rejected,
            "dev_files": len(dev),
        },
    )
    unseen_summary = ", ".join(f"{f} {100 * eer:.1f} %" for f, eer in unseen.items())
    print(
        "detector: "
        + (f"unseen-family EER {unseen_summary} (mean {100 * mean_unseen:.1f} %); " if unseen else "")
        + f"seen families {100 * results['none']['seen_eer']:.1f} %; "
        f"genuine dev recordings rejected by the gate {100 * rejected:.1f} % of {len(dev)} -> {path}"
    )


if __name__ == "__main__":
    main()
