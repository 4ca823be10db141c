"""Does a refinement head improve verification? Base alone vs dense head vs TDNN head, each fusion.

All heads are trained on the same base checkpoint (from benchmarks/train_speechocean.py) with the
speechocean762 train speakers; every system is scored on dev_trials.txt (62 unseen speakers). The
score-fusion weight is tuned on held-out utterances of the training speakers, not on the dev list.

    python benchmarks/head_speechocean.py [--working_dir benchmarks/work/speechocean_log_utterance] [--base WORKING_DIR/triplet/best.keras]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, require_shared_data, write_result

from deep_speaker.config import load_recipe
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.evaluation import evaluate_trials
from deep_speaker.tf.train import train_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--working_dir", default=str(ROOT / "benchmarks" / "work" / "speechocean_log_utterance"), help="from train_speechocean.py"
    )
    parser.add_argument("--base", default=None, help="default: WORKING_DIR/triplet/best.keras")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune_epochs", type=int, default=0)
    args = parser.parse_args()
    corpus = require_shared_data() / "speechocean762"
    working_dir = Path(args.working_dir)
    base = Path(args.base or working_dir / "triplet" / "best.keras")

    def dev(checkpoint) -> dict:
        return evaluate_trials(SpeakerEncoder(checkpoint), corpus / "dev_trials.txt", corpus / "dev", progress=False).summary()

    table = {"base": dev(base)}
    for head in ("dense", "tdnn"):
        recipe = load_recipe("head", head=head, loss="amsoftmax", epochs=args.epochs, finetune_epochs=args.finetune_epochs)
        paths = train_head(working_dir, base, recipe, progress=False)
        weight = json.loads((paths["score"].parent / "head.json").read_text())["fusion_weight"]
        for fusion, path in paths.items():
            table[f"{head}/{fusion}"] = {**dev(path), "checkpoint": str(path), "fusion_weight": weight if fusion == "score" else None}
            print(f"{head}/{fusion}: EER {100 * table[f'{head}/{fusion}']['eer']:.2f} %", flush=True)
    best = min(table, key=lambda name: table[name]["eer"])
    path = write_result("head_speechocean", {"base_checkpoint": str(base), "systems": table, "best": best})
    rows = ", ".join(f"{name} {100 * r['eer']:.2f} % / {r['min_dcf_p0.01']:.3f}" for name, r in table.items())
    print(f"head_speechocean: dev EER / minDCF(0.01): {rows}; best {best} [{path.name}]")


if __name__ == "__main__":
    main()
