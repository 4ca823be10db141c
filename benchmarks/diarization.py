"""Diarization on synthetic conversations built deterministically from the speechocean762 dev speakers.

Each conversation: 2-5 speakers, turns of one or two utterances (silence-trimmed), pauses of 0.2-1.5 s, about
15 % of turns overlapping the previous one by 0.3-1 s, a low noise floor (-60 dBFS white noise). Reports DER
(0.25 s collar, overlap scored) with the speaker count found and with it given, the share of conversations
whose count was found, the real-time factor on this machine, and the one-speaker anchor.

    python benchmarks/diarization.py [--conversations 20] [--checkpoint_file MODEL] [--plot docs/diarization.png]
    python benchmarks/diarization.py --speakers train --conversations 8 --seed 11 --clustering ahc|spectral   # choosing
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import ROOT, require_shared_data, write_result
from deep_speaker.audio import load_speech
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.diarization import Segment, diarization_error_rate
from deep_speaker.diarization.output import plot_timeline
from deep_speaker.diarization.pipeline import DiarizationConfig, Diarizer

RATE = 16000


def conversation(utterances_by_speaker: dict, rng: np.random.Generator, noise_dbfs: float = -60.0, peak_dbfs: float | None = None) -> tuple[np.ndarray, list[Segment]]:
    """One synthetic conversation and its reference turns: speech at its recorded level (or scaled to peak at
    `peak_dbfs`), white noise at `noise_dbfs` RMS under it."""
    speakers = list(rng.choice(sorted(utterances_by_speaker), size=int(rng.integers(2, 6)), replace=False))
    queues = {s: list(rng.permutation(utterances_by_speaker[s])) for s in speakers}
    order = speakers + list(rng.choice(speakers, size=int(rng.integers(len(speakers), 3 * len(speakers)))))
    pieces, reference, cursor, previous = [], [], 0, None
    for speaker in order:
        if speaker == previous or not queues[speaker]:
            continue
        turn = np.concatenate([load_speech(queues[speaker].pop(), trim="reference") for _ in range(min(int(rng.integers(1, 3)), len(queues[speaker])))])
        if reference and rng.random() < 0.15:
            start = max(0, cursor - int(rng.uniform(0.3, 1.0) * RATE))  # overlaps the previous turn's end
        else:
            start = cursor + int(rng.uniform(0.2, 1.5) * RATE)
        pieces.append((start, turn))
        reference.append(Segment(start / RATE, (start + len(turn)) / RATE, speaker, "conversation"))
        cursor, previous = max(cursor, start + len(turn)), speaker
    signal = np.zeros(cursor + RATE // 2, np.float32)
    for start, turn in pieces:
        signal[start : start + len(turn)] += turn
    if peak_dbfs is not None:
        signal *= 10 ** (peak_dbfs / 20) / np.abs(signal).max()
    signal += rng.normal(0, 10 ** (noise_dbfs / 20), signal.size).astype(np.float32)
    return signal, reference


def long_recording(by_speaker: dict, minutes: float, seed: int) -> dict:
    """Peak memory and time of `cli.py diarize` on a `minutes`-long FLAC and on one a sixth as long, each in its own
    process (the file is streamed, so memory should not grow with the duration)."""
    import os
    import subprocess
    import sys
    import tempfile

    import soundfile as sf

    rng = np.random.default_rng(seed)
    measured = {}
    with tempfile.TemporaryDirectory() as folder:
        for length in (minutes / 6, minutes):
            path = Path(folder) / f"long_{length:.0f}min.flac"
            with sf.SoundFile(path, "w", RATE, 1, format="FLAC") as out:  # written piece by piece, never whole in memory
                written = 0
                while written < length * 60 * RATE:
                    signal, _ = conversation(by_speaker, rng)
                    out.write(signal)
                    written += len(signal)
            started = time.perf_counter()
            log = Path(folder) / "diarize.log"
            with open(log, "w") as output:
                child = subprocess.Popen([sys.executable, "cli.py", "diarize", str(path), "--quiet"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(child.pid, 0)  # this child's own peak resident memory
            if status:
                sys.exit(f"diarize failed on {path.name}: {log.read_text()[-1000:]}")
            turns = log.read_text().strip().splitlines()[-1]
            measured[f"{length:.0f}_min"] = {"seconds": round(time.perf_counter() - started, 1), "peak_memory_mb": round(usage.ru_maxrss / 1024, 1), "turns": turns}
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--checkpoint_file", help="model or NAME.fusion.json (default: the shipped default system)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speakers", choices=["dev", "train"], default="dev", help="train: conversations of training speakers, to choose methods on")
    parser.add_argument("--clustering", choices=["ahc", "spectral"], default="ahc")
    parser.add_argument("--long_minutes", type=float, default=0, help="also diarize one recording this long (conversations end to end) with the command line, against one a sixth as long: peak memory and time")
    parser.add_argument("--no_resegment", action="store_true", help="skip the frame-level resegmentation")
    parser.add_argument("--plot", help="write the first conversation's timeline (found turns above the reference) to this PNG")
    parser.add_argument("--noise_dbfs", type=float, default=-60.0, help="white noise floor, RMS dBFS (default -60)")
    parser.add_argument("--peak_dbfs", type=float, help="scale each conversation's speech to peak here first (default: as recorded)")
    args = parser.parse_args()
    utterances = discover_utterances(require_shared_data() / "speechocean762" / args.speakers)
    by_speaker: dict[str, list] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    rng = np.random.default_rng(args.seed)
    conversations = [conversation(by_speaker, rng, args.noise_dbfs, args.peak_dbfs) for _ in range(args.conversations)]
    encoder = Diarizer.from_checkpoint(args.checkpoint_file).encoder  # one encoder for both configurations below
    totals = {"auto": [0.0, 0.0], "given": [0.0, 0.0], "one_speaker": [0.0, 0.0]}
    parts = {name: {"missed": 0.0, "false_alarm": 0.0, "confusion": 0.0} for name in totals}
    counted, seconds, audio_seconds = 0, 0.0, 0.0
    for index, (signal, reference) in enumerate(conversations):
        speakers = len({s.speaker for s in reference})
        start = time.perf_counter()
        found = Diarizer(encoder, DiarizationConfig(clustering=args.clustering, resegment=not args.no_resegment)).diarize_waveform(signal, "conversation")
        seconds += time.perf_counter() - start
        if args.plot and index == 0:
            plot_timeline(args.plot, found, reference)
        audio_seconds += len(signal) / RATE
        given = Diarizer(encoder, DiarizationConfig(clustering=args.clustering, num_speakers=speakers, resegment=not args.no_resegment)).diarize_waveform(signal, "conversation")
        one = [Segment(0.0, len(signal) / RATE, "everyone", "conversation")]
        counted += len({s.speaker for s in found}) == speakers
        for name, hypothesis in (("auto", found), ("given", given), ("one_speaker", one)):
            error = diarization_error_rate(reference, hypothesis)
            totals[name][0] += error.missed + error.false_alarm + error.confusion
            totals[name][1] += error.reference
            for part in parts[name]:
                parts[name][part] += getattr(error, part)
    der = {name: errors / reference for name, (errors, reference) in totals.items()}
    result = {
        "speakers": args.speakers, "noise_dbfs": args.noise_dbfs, "peak_dbfs": args.peak_dbfs, "clustering": args.clustering, "resegment": not args.no_resegment, "conversations": args.conversations, "audio_seconds": audio_seconds, "model": encoder.fingerprint,
        "der_auto_count": der["auto"], "der_given_count": der["given"], "der_one_speaker": der["one_speaker"],
        "count_accuracy": counted / args.conversations, "real_time_factor": seconds / audio_seconds,
        "error_parts_percent": {name: {part: 100 * value / totals[name][1] for part, value in values.items()} for name, values in parts.items()},
    }
    if args.long_minutes:
        result["long_recording"] = long_recording(by_speaker, args.long_minutes, args.seed)
    condition = ("" if args.noise_dbfs == -60.0 else f"_noise{args.noise_dbfs:g}") + ("" if args.peak_dbfs is None else f"_peak{args.peak_dbfs:g}")
    path = write_result(("diarization" if args.speakers == "dev" else f"diarization_{args.speakers}_{args.clustering}{'_no_resegment' if args.no_resegment else ''}") + condition, result)
    long_line = "".join(f"; {name.replace('_', ' ')}: {v['seconds']} s, peak {v['peak_memory_mb']:.0f} MB" for name, v in result.get("long_recording", {}).items())
    print(
        f"diarization ({args.speakers} speakers, {args.clustering}{', no resegmentation' if args.no_resegment else ''}, {args.conversations} conversations, {audio_seconds / 60:.1f} min): DER {100 * der['auto']:.2f} % with the count found "
        f"({100 * counted / args.conversations:.0f} % counts right), {100 * der['given']:.2f} % with it given, one-speaker anchor "
        f"{100 * der['one_speaker']:.2f} % (count found: missed {result['error_parts_percent']['auto']['missed']:.2f}, false alarm {result['error_parts_percent']['auto']['false_alarm']:.2f}, confusion {result['error_parts_percent']['auto']['confusion']:.2f}); real-time factor {seconds / audio_seconds:.3f}{long_line} [{path.name}]"
    )


if __name__ == "__main__":
    main()
