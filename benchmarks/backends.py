"""Score back ends on the dev trials: cosine, centred cosine, AS-norm and LDA + PLDA, for one model.

Back ends are fitted on embeddings of the speechocean762 *training* speakers (all 2,500 utterances); the
dev speakers are unseen. Their options are the defaults (AS-norm top 100 of a one-vector-per-speaker
cohort, PLDA after LDA to 100 dimensions), not tuned on dev. Prints one line, writes
benchmarks/results/backends.json; with --save, stores the fitted back ends for the model (so
`eval-trials --scorer NAME` and `verify --scorer NAME` use them).

    python benchmarks/backends.py [--checkpoint deep_speaker/pretrained/deep_speaker.keras] [--save]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import require_shared_data, write_result

from deep_speaker.data.corpus import discover_utterances
from deep_speaker.embedding import DEFAULT_CHECKPOINT, SpeakerEncoder
from deep_speaker.evaluation import Trials, score_trials, verification_result
from deep_speaker.scoring import SCORERS, build_scorer, save_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--save", action="store_true", help="store the fitted back ends for this model")
    args = parser.parse_args()
    corpus = require_shared_data() / "speechocean762"
    encoder = SpeakerEncoder(args.checkpoint)
    start = time.perf_counter()
    train = discover_utterances(corpus / "train")
    train_embeddings = encoder.embed_many([u.path for u in train])
    labels = np.array([u.speaker for u in train])
    trials = Trials.read(corpus / "dev_trials.txt")
    files = trials.files()
    dev = dict(zip(files, encoder.embed_many([corpus / "dev" / f for f in files])))
    embed_seconds = time.perf_counter() - start
    table = {}
    for name in SCORERS:
        scorer = build_scorer(name).fit(train_embeddings, labels)
        table[name] = verification_result(score_trials(dev, trials, scorer), trials.labels).summary()
        if args.save and scorer.needs_fit:
            save_scorer(scorer, encoder.fingerprint)
    path = write_result(
        "backends",
        {
            "checkpoint": args.checkpoint,
            "model": encoder.fingerprint,
            "train_utterances": len(train),
            "embed_seconds": embed_seconds,
            "systems": table,
        },
    )
    rows = ", ".join(f"{name} {100 * r['eer']:.2f} % / {r['min_dcf_p0.01']:.3f}" for name, r in table.items())
    print(f"backends ({encoder.fingerprint}): dev EER / minDCF(0.01): {rows} [{path.name}]")


if __name__ == "__main__":
    main()
