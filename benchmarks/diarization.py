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

import numpy as np

from common import require_shared_data, write_result
from deep_speaker.audio import load_speech
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.diarization import Segment, diarization_error_rate
from deep_speaker.diarization.output import plot_timeline
from deep_speaker.diarization.pipeline import DiarizationConfig, Diarizer

RATE = 16000


def conversation(utterances_by_speaker: dict, rng: np.random.Generator) -> tuple[np.ndarray, list[Segment]]:
    """One synthetic conversation and its reference turns."""
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
    signal += rng.normal(0, 10 ** (-60 / 20), signal.size).astype(np.float32)
    return signal, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--checkpoint_file", help="model or NAME.fusion.json (default: the shipped default system)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speakers", choices=["dev", "train"], default="dev", help="train: conversations of training speakers, to choose methods on")
    parser.add_argument("--clustering", choices=["ahc", "spectral"], default="ahc")
    parser.add_argument("--plot", help="write the first conversation's timeline (found turns above the reference) to this PNG")
    args = parser.parse_args()
    utterances = discover_utterances(require_shared_data() / "speechocean762" / args.speakers)
    by_speaker: dict[str, list] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    rng = np.random.default_rng(args.seed)
    conversations = [conversation(by_speaker, rng) for _ in range(args.conversations)]
    encoder = Diarizer.from_checkpoint(args.checkpoint_file).encoder  # one encoder for both configurations below
    totals = {"auto": [0.0, 0.0], "given": [0.0, 0.0], "one_speaker": [0.0, 0.0]}
    counted, seconds, audio_seconds = 0, 0.0, 0.0
    for index, (signal, reference) in enumerate(conversations):
        speakers = len({s.speaker for s in reference})
        start = time.perf_counter()
        found = Diarizer(encoder, DiarizationConfig(clustering=args.clustering)).diarize_waveform(signal, "conversation")
        seconds += time.perf_counter() - start
        if args.plot and index == 0:
            plot_timeline(args.plot, found, reference)
        audio_seconds += len(signal) / RATE
        given = Diarizer(encoder, DiarizationConfig(clustering=args.clustering, num_speakers=speakers)).diarize_waveform(signal, "conversation")
        one = [Segment(0.0, len(signal) / RATE, "everyone", "conversation")]
        counted += len({s.speaker for s in found}) == speakers
        for name, hypothesis in (("auto", found), ("given", given), ("one_speaker", one)):
            error = diarization_error_rate(reference, hypothesis)
            totals[name][0] += error.missed + error.false_alarm + error.confusion
            totals[name][1] += error.reference
    der = {name: errors / reference for name, (errors, reference) in totals.items()}
    result = {
        "speakers": args.speakers, "clustering": args.clustering, "conversations": args.conversations, "audio_seconds": audio_seconds, "model": encoder.fingerprint,
        "der_auto_count": der["auto"], "der_given_count": der["given"], "der_one_speaker": der["one_speaker"],
        "count_accuracy": counted / args.conversations, "real_time_factor": seconds / audio_seconds,
    }
    path = write_result("diarization" if args.speakers == "dev" else f"diarization_{args.speakers}_{args.clustering}", result)
    print(
        f"diarization ({args.speakers} speakers, {args.clustering}, {args.conversations} conversations, {audio_seconds / 60:.1f} min): DER {100 * der['auto']:.2f} % with the count found "
        f"({100 * counted / args.conversations:.0f} % counts right), {100 * der['given']:.2f} % with it given, one-speaker anchor "
        f"{100 * der['one_speaker']:.2f} %; real-time factor {seconds / audio_seconds:.3f} [{path.name}]"
    )


if __name__ == "__main__":
    main()
