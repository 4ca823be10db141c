"""Enrolment and identification on the speechocean762 dev speakers (unseen in training).

Each of the 62 dev speakers is enrolled with 3 recordings; the other 5 of each are identified
(closed-set top-1 accuracy, and how often the right speaker is also above the threshold). Open set:
each speaker in turn is removed from the store and its 5 recordings identified again: they should come
out "unknown" at the calibrated threshold (rejection rate). Uses the real SQLite store and CLI-level API.

    python benchmarks/identify_speechocean.py [--checkpoint checkpoints/deep_speaker.keras] [--operating-point eer]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import require_shared_data, write_result
from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.enrol import SpeakerRegistry, resolve_threshold

ENROL_FILES = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--operating-point", dest="operating_point", default="eer")
    args = parser.parse_args()
    dev = require_shared_data() / "speechocean762" / "dev"
    speakers = {folder.name: sorted(folder.glob("*.flac")) for folder in sorted(dev.iterdir()) if folder.is_dir()}
    threshold, source = resolve_threshold(args.checkpoint, args.operating_point)
    if threshold is None:
        raise SystemExit(f"{args.checkpoint}: {source}")
    encoder = SpeakerEncoder(args.checkpoint)
    correct = accepted_correct = rejected = tests = 0
    with tempfile.TemporaryDirectory() as folder, SpeakerRegistry(Path(folder) / "s.db", encoder) as registry:
        for name, files in speakers.items():
            registry.enroll(name, files[:ENROL_FILES])
        for name, files in speakers.items():
            for path in files[ENROL_FILES:]:
                best, score = registry.identify(path, top_k=1)[0]
                tests += 1
                correct += best == name
                accepted_correct += best == name and score >= threshold
        for name, files in speakers.items():
            registry.remove(name)
            for path in files[ENROL_FILES:]:
                rejected += registry.identify(path, top_k=1)[0][1] < threshold
            registry.enroll(name, files[:ENROL_FILES])
    result = {
        "checkpoint": args.checkpoint,
        "speakers": len(speakers),
        "test_recordings": tests,
        "threshold": threshold,
        "operating_point": args.operating_point,
        "top1_accuracy": correct / tests,
        "top1_accepted_accuracy": accepted_correct / tests,
        "open_set_rejection_rate": rejected / tests,
    }
    path = write_result("identify_speechocean", result)
    print(
        f"identify_speechocean: {len(speakers)} speakers x {ENROL_FILES} enrolment files, {tests} tests: top-1 {100 * result['top1_accuracy']:.1f} %, "
        f"top-1 and above threshold {100 * result['top1_accepted_accuracy']:.1f} %, unknown rejected {100 * result['open_set_rejection_rate']:.1f} % "
        f"at {args.operating_point} threshold {threshold:.4f} [{path.name}]"
    )


if __name__ == "__main__":
    main()
