"""Ablation table on the speechocean762 dev trials: each system's EER and minDCF(0.01), clean and with every dev
recording re-encoded (MP3 16 kHz, 8 kHz telephone band; every file is some trial's test side, so both sides of every
trial are), with AS-norm, its training time and size.

The first column, the all-pairs EER of the held-out utterances of the training speakers (the training runs'
validation split, whole utterances), is what systems are chosen by; dev is reported, not tuned to.
Systems are speaker models (`label=PATH[@RUN_DIR,...]`: the run folders' training.csv give the training time),
listed in ablation order; the classical floor (benchmarks/baseline.py) heads the table. Back ends are
fitted on the training speakers (defaults, not tuned on dev). Embeddings are cached per model fingerprint
and condition under benchmarks/work/accuracy, so adding a system costs only that system.

    python benchmarks/accuracy.py                      # the default systems below (recipes/speechocean762)
    python benchmarks/accuracy.py --system "mine=wd/x/softmax/best.keras@wd/x/softmax"

Prints one line, writes benchmarks/results/accuracy.json and a Markdown table to accuracy.md beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import RESULTS, ROOT, require_shared_data, write_result

from deep_speaker.assembly import load_encoder
from deep_speaker.audio import read_audio
from deep_speaker.data.cache import read_manifest
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.evaluation import Trials, score_trials, verification_result
from deep_speaker.fileio import atomic_save_npy, atomic_write_bytes
from deep_speaker.scoring import all_pairs_eer, build_scorer
from deep_speaker.scoring.metrics import threshold_at_false_accept_rate

WORK = ROOT / "benchmarks" / "work" / "accuracy"
CONDITIONS = ("clean", "mp3", "telephone")
DEFAULT_SYSTEMS = [  # label=checkpoint@run folders (their training.csv give the training time): recipes/speechocean762/run.sh
    "ResCNN 0.25, 8 utt/spk, AM-softmax + triplet + dense head (previous default)=wd/speechocean762/rescnn_previous.keras",
    "ECAPA-TDNN 0.5, 16 utt/spk + 6 augmented copies (speed, noise, rooms, codecs), AAM-softmax=wd/so/softmax/best.keras@wd/so/softmax",
    "ECAPA-TDNN + large-margin fine-tuning (3 s crops, margin 0.3)=wd/so/softmax_lmf/best.keras@wd/so/softmax,wd/so/softmax_lmf",
    "ResCNN (previous) + ECAPA-TDNN, one model, score fusion 0.5 / 0.5=wd/so/ensemble_prev.keras@wd/so/softmax",
    "GE2E (Resemblyzer's pretrained encoder, imported; not trained here)=wd/ge2e.keras",
    "GE2E + ECAPA-TDNN, z-normalised score fusion (shipped default)=wd/so/default.fusion.json@wd/so/softmax",
    "GE2E + ResCNN (previous) + ECAPA-TDNN, z-normalised score fusion=wd/so/ge2e_ensprev.fusion.json@wd/so/softmax",
    "ECAPA-TDNN distilled from GE2E (same recipe + cosine loss to GE2E's embeddings, weight 1)=wd/so/softmax_distill/best.keras@wd/so/softmax_distill",
    "GE2E + distilled ECAPA-TDNN, z-normalised score fusion=wd/so/ge2e_distill.fusion.json@wd/so/softmax_distill",
]


def channel_copy(source: Path, condition: str, root: Path) -> Path:
    """The file through a channel, written once: an MP3 at 16 kHz, or FLAC at 8 kHz (the reader resamples to 16 kHz)."""
    if condition == "mp3":
        target = root / "mp3" / source.with_suffix(".mp3").name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            audio = read_audio(source)
            sf.write(
                target, audio / max(1e-9, np.abs(audio).max()) * 0.9, 16000, format="MP3", subtype="MPEG_LAYER_III", compression_level=0.9
            )
        return target
    target = root / "telephone" / source.with_suffix(".flac").name
    if not target.is_file():
        import soxr

        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, soxr.resample(read_audio(source), 16000, 8000, quality="HQ"), 8000)
    return target


def embeddings(encoder, name: str, paths: list[Path]) -> np.ndarray:
    """Embeddings of `paths`, cached by the model's fingerprint and `name` (a fusion's from its members' caches)."""
    if len(encoder.parts) > 1:
        return np.concatenate([embeddings(part, name, paths) * scale for part, scale in encoder.parts], axis=1)
    cache = WORK / "embeddings" / f"{encoder.fingerprint}_{name}.npy"
    if cache.is_file():
        return np.load(cache)
    vectors = encoder.embed_many(paths, progress=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(cache, vectors)
    return vectors


def training_seconds(run_dirs: list[Path]) -> float | None:
    """Sum of the epochs' wall time in the runs' training.csv (None without runs, or if a run has no log)."""
    if not run_dirs:
        return None
    total = 0.0
    for run in run_dirs:
        log = run / "training.csv"
        if not log.is_file():
            return None
        with log.open() as handle:
            total += sum(float(row["epoch_seconds"]) for row in csv.DictReader(handle) if row.get("epoch_seconds"))
    return total


def held_out(working_dir: Path) -> tuple[list[Path], np.ndarray]:
    """The held-out utterances of the training speakers (the training runs' validation split) and their speakers."""
    validation = set(json.loads((working_dir / "split.json").read_text())["validation"])
    rows = [e for e in read_manifest(working_dir) if e.utterance_id in validation]
    return [ROOT / e.audio_path for e in rows], np.array([e.speaker for e in rows])


def evaluate(label: str, checkpoint: Path, run_dirs: list[Path], corpus: Path, trials: Trials, train, validation) -> dict:
    encoder = load_encoder(checkpoint)
    files = trials.files()
    dev = {"clean": dict(zip(files, embeddings(encoder, "dev", [corpus / "dev" / f for f in files])))}
    tests = list(dict.fromkeys(trials.test))
    for condition in CONDITIONS[1:]:
        copies = [channel_copy(corpus / "dev" / f, condition, WORK / "audio") for f in tests]
        dev[condition] = {**dev["clean"], **dict(zip(tests, embeddings(encoder, f"dev_{condition}", copies)))}
    row = {
        "system": label,
        "checkpoint": str(checkpoint),
        "model": encoder.fingerprint,
        "parameters": sum(int(part.model.count_params()) for part, _ in encoder.parts),
    }
    held_out_embeddings = embeddings(encoder, "validation", validation[0])
    row["validation_eer"] = all_pairs_eer(held_out_embeddings @ held_out_embeddings.T, validation[1])
    for condition in CONDITIONS:
        row[condition] = verification_result(score_trials(dev[condition], trials), trials.labels).summary()
    train_vectors = embeddings(encoder, "train", [u.path for u in train])
    asnorm = build_scorer("asnorm").fit(train_vectors, np.array([u.speaker for u in train]))
    row["asnorm"] = verification_result(score_trials(dev["clean"], trials, asnorm), trials.labels).summary()
    clean_scores = score_trials(dev["clean"], trials)
    far1 = threshold_at_false_accept_rate(clean_scores[trials.labels == 0], 0.01)
    own = np.array([float(np.dot(dev["clean"][f], dev[c][f])) for f in tests for c in CONDITIONS[1:]])
    row["self_score_through_channel_min"] = float(own.min())
    row["self_accepted_through_channel_at_far1"] = float(np.mean(own >= far1))  # a recording against its MP3 / 8 kHz copy
    row["training_seconds"] = training_seconds(run_dirs)
    return row


def baseline_row() -> dict | None:
    path = RESULTS / "baseline.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())["mfcc_mean_std_lda_cosine"]
    return {"system": "classical floor: 30 MFCC mean + std, LDA (benchmarks/baseline.py)", "clean": result}


def markdown(rows: list[dict]) -> str:
    def cell(row, key):
        return f"{100 * row[key]['eer']:.2f} % / {row[key]['min_dcf_p0.01']:.3f}" if key in row else "-"

    lines = [
        "| system | held-out train-speaker EER | dev EER / minDCF(0.01) | + AS-norm | MP3 16 kHz copies | 8 kHz telephone copies | own copy accepted at far1 | training (2-core CPU) | weights |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seconds = row.get("training_seconds")
        hours = f"{seconds / 3600:.2f} h" if seconds else "-"
        size = f"{row['parameters'] / 1e6:.2f} M" if "parameters" in row else "-"
        accepted = f"{100 * row['self_accepted_through_channel_at_far1']:.1f} %" if "parameters" in row else "-"
        validation = f"{100 * row['validation_eer']:.2f} %" if "validation_eer" in row else "-"
        lines.append(
            f"| {row['system']} | {validation} | {cell(row, 'clean')} | {cell(row, 'asnorm')} | {cell(row, 'mp3')} | {cell(row, 'telephone')} | {accepted} | {hours} | {size} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validation_dir", default="wd/so", help="feature cache whose split.json holds the held-out training utterances")
    parser.add_argument("--system", action="append", help="label=CHECKPOINT[@RUN_DIR,...] (repeatable; default: the recipes' systems)")
    args = parser.parse_args()
    corpus = require_shared_data() / "speechocean762"
    trials = Trials.read(corpus / "dev_trials.txt")
    train = discover_utterances(corpus / "train")
    validation = held_out(ROOT / args.validation_dir)
    start = time.perf_counter()
    rows = [row for row in [baseline_row()] if row]
    for spec in args.system or DEFAULT_SYSTEMS:
        label, _, location = spec.rpartition("=")
        checkpoint, _, runs = location.partition("@")
        checkpoint = ROOT / checkpoint
        if not checkpoint.is_file():
            print(f"skipped {label!r}: {checkpoint} not found (train it with its recipe first)")
            continue
        rows.append(evaluate(label, checkpoint, [ROOT / r for r in runs.split(",") if r], corpus, trials, train, validation))
    path = write_result("accuracy", {"trials": "speechocean762/dev_trials.txt", "seconds": time.perf_counter() - start, "systems": rows})
    atomic_write_bytes(RESULTS / "accuracy.md", markdown(rows).encode())
    summary = "; ".join(f"{row['system'].split(' (')[0][:40]}: {100 * row['clean']['eer']:.2f} %" for row in rows)
    print(f"accuracy (dev EER, cosine): {summary} [{path.name}, accuracy.md]")


if __name__ == "__main__":
    main()
