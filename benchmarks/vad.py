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

from common import RESULTS, require_shared_data, write_result
from deep_speaker.audio import FRAME_STEP, load_speech, read_audio
from deep_speaker.data.augment import babble, coloured_noise, fit_length, reverberate
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.fileio import atomic_write_bytes
from deep_speaker.vad import VAD_METHODS, speech_activity
from diarization import RATE, conversation

FLOORS_DBFS = (-70, -60, -50, -45, -40, -35, -30)
KINDS = ("white", "pink", "brown", "babble", "hum", "recorded", "white + room")
PEAKS_DBFS = (-40, -20, -6, -3)
DEFAULT_PEAK_DBFS = -6.0


def reference_blocks(reference, num_blocks: int) -> np.ndarray:
    """Speech (any reference turn covers the block's centre) per 10 ms block."""
    centres = (np.arange(num_blocks) + 0.5) * FRAME_STEP / RATE
    speech = np.zeros(num_blocks, dtype=bool)
    for segment in reference:
        speech |= (centres >= segment.start) & (centres < segment.end)
    return speech


def noise_floor(kind: str, length: int, rng: np.random.Generator, sources: dict) -> np.ndarray:
    """`length` samples of the noise `kind` at unit RMS."""
    if kind in ("white", "pink", "brown", "white + room"):
        noise = coloured_noise(kind.split()[0], length, rng).astype(np.float64)
    elif kind == "babble":
        noise = babble(sources["talkers"], length, rng).astype(np.float64)
    elif kind == "hum":
        t = np.arange(length) / RATE
        noise = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
    else:
        noise = fit_length(sources["recorded"][int(rng.integers(len(sources["recorded"])))], length, rng).astype(np.float64)
    return noise / np.sqrt(np.mean(noise**2) + 1e-20)


def condition(clean: list, kind: str, floor_dbfs: float, peak_dbfs: float, sources: dict, seed: tuple) -> list[np.ndarray]:
    """The conversations with their speech at `peak_dbfs` and the noise `kind` at `floor_dbfs` RMS under them."""
    rng = np.random.default_rng(seed)
    noisy = []
    for signal, _ in clean:
        speech = signal * (10 ** (peak_dbfs / 20) / np.abs(signal).max())
        if kind == "white + room":
            speech = reverberate(speech, sources["rooms"][int(rng.integers(len(sources["rooms"])))])
            speech = speech * (10 ** (peak_dbfs / 20) / np.abs(speech).max())
        noisy.append((speech + 10 ** (floor_dbfs / 20) * noise_floor(kind, speech.size, rng, sources)).astype(np.float32))
    return noisy


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
    clean = [conversation(by_speaker, rng, noise_dbfs=-300.0) for _ in range(args.conversations)]
    truths = [reference_blocks(reference, -(-signal.size // FRAME_STEP)) for signal, reference in clean]
    talkers = [load_speech(u.path) for u in discover_utterances(data / "speechocean762" / "train")[::50]]
    sources = {
        "talkers": talkers,
        "recorded": [read_audio(p) for p in sorted((data / "noise").glob("*.flac"))],
        "rooms": [read_audio(p) for p in sorted((data / "rir").glob("*.flac"))],
    }
    sweep, levels = {}, {}
    for kind in KINDS:
        for floor in FLOORS_DBFS:
            signals = condition(clean, kind, floor, DEFAULT_PEAK_DBFS, sources, seed=(args.seed, floor + 1000))
            sweep[f"{kind} {floor}"] = {method: scores(signals, truths, method) for method in VAD_METHODS}
    for peak in PEAKS_DBFS:
        signals = condition(clean, "white", peak - 39.0, peak, sources, seed=(args.seed, peak + 1000))
        levels[f"peak {peak}"] = {method: scores(signals, truths, method) for method in VAD_METHODS}
    audio_seconds = sum(signal.size for signal, _ in clean) / RATE * (len(sweep) + len(levels))
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
    path = write_result("vad", {"conversations": args.conversations, "peak_dbfs": DEFAULT_PEAK_DBFS, "summary": summary, "sweep": sweep, "levels": levels})
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
    lines = ["F1 of speech per 10 ms block (speech peaking at -6 dBFS; rows: noise kind, columns: floor RMS dBFS), " + " / ".join(VAD_METHODS), ""]
    lines += ["| noise | " + " | ".join(f"{f} dBFS" for f in FLOORS_DBFS) + " |", "|---|" + "---|" * len(FLOORS_DBFS)]
    for kind in KINDS:
        cells = [" / ".join(f"{sweep[f'{kind} {f}'][m]['f1']:.2f}" for m in VAD_METHODS) for f in FLOORS_DBFS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Speech level sweep, white noise 39 dB under the speech peak: F1 " + " / ".join(VAD_METHODS), ""]
    lines += ["| speech peak | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    lines.append("| F1 | " + " | ".join(" / ".join(f"{c[m]['f1']:.2f}" for m in VAD_METHODS) for c in levels.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
