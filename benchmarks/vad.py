"""Voice-activity detection frame by frame over noise floors, noise kinds, rooms and speech levels.

Conversations are built as benchmarks/diarization.py builds them (dev speakers, 2-5 per conversation, pauses and
overlaps), scaled so the speech peaks at `--peak_dbfs`, then a noise floor is added at an RMS level from -70 to -30
dBFS: white, pink or brown noise, babble (3-7 training speakers' speech summed), 50 Hz mains hum with harmonics, the
recorded noises of `../shared/data/noise`, or white noise under speech reverberated by a room of
`../shared/data/rir`. A level sweep then moves the speech peak from -40 to -3 dBFS with a white floor 39 dB under
it (the -6 / -45 dBFS condition, louder or quieter as a whole).
Each detector (`deep_speaker.vad.VAD_METHODS`) is scored per 10 ms block against the reference turns: precision,
recall and F1 of speech, over all conversations of a condition.

    python benchmarks/vad.py [--conversations 6]

Prints one line, writes benchmarks/results/vad.json and benchmarks/results/vad.md (the tables).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import RESULTS, noise_sources, require_shared_data, write_result
from diarization import reference_speech

from deep_speaker.audio import SAMPLE_RATE
from deep_speaker.data.conversations import NOISE_KINDS, block_centres, conversation, in_noise, talkers_at
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.fileio import atomic_write_bytes
from deep_speaker.vad import VAD_METHODS, speech_activity

FLOORS_DBFS = (-70, -60, -50, -45, -40, -35, -30)
PEAKS_DBFS = (-40, -20, -6, -3)
DEFAULT_PEAK_DBFS = -6.0


def condition(clean: list, kind: str, floor_dbfs: float, peak_dbfs: float, sources, seed: tuple) -> list[np.ndarray]:
    """The conversations with their speech at `peak_dbfs` and the noise `kind` at `floor_dbfs` RMS under them."""
    rng = np.random.default_rng(seed)
    return [in_noise(signal, rng, kind, floor_dbfs, peak_dbfs, sources) for signal, _ in clean]


def scores(signals: list, truths: list, method: str) -> dict:
    hits = found = actual = 0
    seconds = 0.0
    for signal, truth in zip(signals, truths):
        start = time.perf_counter()
        decided = speech_activity(signal, method)[: truth.size]
        seconds += time.perf_counter() - start
        hits += int(np.sum(decided & truth))
        found += int(decided.sum())
        actual += int(truth.sum())
    precision, recall = hits / max(found, 1), hits / max(actual, 1)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-12), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = require_shared_data()
    by_speaker: dict[str, list] = {}
    for utterance in discover_utterances(data / "speechocean762" / "dev"):
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    rng = np.random.default_rng(args.seed)
    clean = [conversation(by_speaker, rng, load=reference_speech) for _ in range(args.conversations)]
    truths = [talkers_at(turns, block_centres(signal.size)) >= 1 for signal, turns in clean]
    sources = noise_sources(data)
    sweep, levels = {}, {}
    for kind in NOISE_KINDS:
        for floor in FLOORS_DBFS:
            signals = condition(clean, kind, floor, DEFAULT_PEAK_DBFS, sources, seed=(args.seed, floor + 1000))
            sweep[f"{kind} {floor}"] = {method: scores(signals, truths, method) for method in VAD_METHODS}
    for peak in PEAKS_DBFS:
        signals = condition(clean, "white", peak - 39.0, peak, sources, seed=(args.seed, peak + 1000))
        levels[f"peak {peak}"] = {method: scores(signals, truths, method) for method in VAD_METHODS}
    audio_seconds = sum(signal.size for signal, _ in clean) / SAMPLE_RATE * (len(sweep) + len(levels))
    summary = {
        method: {
            "median_f1": float(np.median([c[method]["f1"] for c in sweep.values()])),
            "worst_f1": float(min(c[method]["f1"] for c in sweep.values())),
            "worst_condition": min(sweep, key=lambda name: sweep[name][method]["f1"]),
            "f1_white_-45": sweep["white -45"][method]["f1"],
            "f1_pink_-45": sweep["pink -45"][method]["f1"],
            "worst_f1_over_levels": float(min(c[method]["f1"] for c in levels.values())),
            "real_time_factor": sum(c[method]["seconds"] for c in (*sweep.values(), *levels.values())) / audio_seconds,
        }
        for method in VAD_METHODS
    }
    path = write_result(
        "vad", {"conversations": args.conversations, "peak_dbfs": DEFAULT_PEAK_DBFS, "summary": summary, "sweep": sweep, "levels": levels}
    )
    atomic_write_bytes(RESULTS / "vad.md", markdown(sweep, levels).encode())
    print(
        "vad: "
        + "; ".join(
            f"{m} F1 median {s['median_f1']:.3f}, worst {s['worst_f1']:.3f} ({s['worst_condition']}), -45 dBFS white {s['f1_white_-45']:.3f} / pink {s['f1_pink_-45']:.3f}, "
            f"worst over speech levels {s['worst_f1_over_levels']:.3f}, RTF {s['real_time_factor']:.4f}"
            for m, s in summary.items()
        )
        + f" [{path.name}]"
    )


def markdown(sweep: dict, levels: dict) -> str:
    lines = [
        "F1 of speech per 10 ms block (speech peaking at -6 dBFS; rows: noise kind, columns: floor RMS dBFS), " + " / ".join(VAD_METHODS),
        "",
    ]
    lines += ["| noise | " + " | ".join(f"{f} dBFS" for f in FLOORS_DBFS) + " |", "|---|" + "---|" * len(FLOORS_DBFS)]
    for kind in NOISE_KINDS:
        cells = [" / ".join(f"{sweep[f'{kind} {f}'][m]['f1']:.2f}" for m in VAD_METHODS) for f in FLOORS_DBFS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Speech level sweep, white noise 39 dB under the speech peak: F1 " + " / ".join(VAD_METHODS), ""]
    lines += ["| speech peak | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    lines.append("| F1 | " + " | ".join(" / ".join(f"{c[m]['f1']:.2f}" for m in VAD_METHODS) for c in levels.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
