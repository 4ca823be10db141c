"""Enrolment and identification on the speechocean762 dev speakers (unseen in training).

Each of the 62 dev speakers is enrolled with 3 recordings; the other 5 of each are identified
(closed-set top-1 accuracy, and how often the right speaker is also above the threshold). Open set:
each speaker in turn is removed from the store and its 5 recordings identified again: they should come
out "unknown" at the calibrated threshold (rejection rate). Uses the real SQLite store and CLI-level API.

    python benchmarks/identify_speechocean.py [--checkpoint deep_speaker/pretrained/deep_speaker.keras]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import require_shared_data, write_result

from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.enrol import SpeakerRegistry
from deep_speaker.scoring.calibration import OPERATING_POINTS
from deep_speaker.verification import Verifier

ENROL_FILES = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    args = parser.parse_args()
    dev = require_shared_data() / "speechocean762" / "dev"
    speakers = {folder.name: sorted(folder.glob("*.flac")) for folder in sorted(dev.iterdir()) if folder.is_dir()}
    encoder = SpeakerEncoder(args.checkpoint)
    thresholds = {point: Verifier(encoder, operating_point=point).threshold()[0] for point in OPERATING_POINTS}
    if None in thresholds.values():
        raise SystemExit(f"{args.checkpoint}: not calibrated; run `python cli.py calibrate` first")
    verifier = Verifier(encoder, threshold=-1.0)  # ranks only; the thresholds above are applied below
    known, unknown = [], []  # (correct top-1?, top-1 score) with the speaker enrolled; top-1 score with it removed
    with tempfile.TemporaryDirectory() as folder, SpeakerRegistry(Path(folder) / "s.db", encoder) as registry:
        for name, files in speakers.items():
            registry.enroll(name, files[:ENROL_FILES])
        for name, files in speakers.items():
            for path in files[ENROL_FILES:]:
                best, score = verifier.identify(path, registry, top_k=1).ranked[0]
                known.append((best == name, score))
        for name, files in speakers.items():
            registry.remove(name)
            unknown += [verifier.identify(path, registry, top_k=1).ranked[0][1] for path in files[ENROL_FILES:]]
            registry.enroll(name, files[:ENROL_FILES])
    correct = np.array([c for c, _ in known])
    known_scores, unknown_scores = np.array([s for _, s in known]), np.array(unknown)
    result = {
        "checkpoint": args.checkpoint,
        "speakers": len(speakers),
        "test_recordings": len(known),
        "top1_accuracy": float(correct.mean()),
    }
    for point, threshold in thresholds.items():
        result[point] = {
            "threshold": threshold,
            "top1_correct_and_accepted": float(np.mean(correct & (known_scores >= threshold))),
            "open_set_rejection_rate": float(np.mean(unknown_scores < threshold)),
        }
    path = write_result("identify_speechocean", result)
    points = "; ".join(
        f"{p} (t={r['threshold']:.3f}): accepted-correct {100 * r['top1_correct_and_accepted']:.1f} %, unknown rejected {100 * r['open_set_rejection_rate']:.1f} %"
        for p, r in ((p, result[p]) for p in OPERATING_POINTS)
    )
    print(
        f"identify_speechocean: {len(speakers)} speakers x {ENROL_FILES} enrolment files, {len(known)} tests: top-1 {100 * result['top1_accuracy']:.1f} %; {points} [{path.name}]"
    )


if __name__ == "__main__":
    main()
