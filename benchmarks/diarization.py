"""Diarization on synthetic conversations built deterministically from the speechocean762 dev speakers.

Each conversation (`deep_speaker.data.conversations`): 2-5 speakers, turns of one or two utterances
(silence-trimmed), pauses of 0.2-1.5 s, about 15 % of turns overlapping the previous one by 0.3-1 s; then a noise
floor (default: white noise at -60 dBFS RMS under the speech as recorded). Reports DER (0.25 s collar, overlap
scored) with the speaker count found, with it given, and with one speaker per instant (`exclusive`), its parts,
the overlap detector's precision and recall per 10 ms block, the share of conversations whose count was found, the
real-time factor on this machine, and the one-speaker anchor.

    python benchmarks/diarization.py [--conversations 20] [--checkpoint_file MODEL] [--plot docs/diarization.png]
    python benchmarks/diarization.py --kind pink --noise_dbfs -45 --peak_dbfs -6       # one condition
    python benchmarks/diarization.py --sweep --conversations 10 --sweep_plot docs/diarization_snr.png
    python benchmarks/diarization.py --speakers train --conversations 8 --seed 11 --clustering ahc|spectral   # choosing

`--sweep`: white, pink and babble floors and white noise under reverberant speech (rooms of ../shared/data/rir),
from -70 to -35 dBFS under speech peaking at -6 dBFS, plus the default condition; one plot of DER against the SNR
(speech peak over the floor's RMS).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import ROOT, noise_sources, require_shared_data, write_result

from deep_speaker.assembly import load_diarizer
from deep_speaker.audio import load_speech
from deep_speaker.data.conversations import block_centres, conversation, in_noise, talkers_at
from deep_speaker.data.corpus import discover_utterances
from deep_speaker.diarization import Segment, diarization_error_rate
from deep_speaker.diarization.output import plot_timeline, save_figure
from deep_speaker.diarization.pipeline import CLUSTERINGS, DiarizationConfig, Diarizer

RATE = 16000
SWEEP_KINDS = ("white", "pink", "babble", "white + room")
SWEEP_FLOORS_DBFS = (-70, -55, -45, -40, -35)
SWEEP_PEAK_DBFS = -6.0
SYSTEMS = ("auto", "given", "exclusive", "one_speaker")


def talking(segments: list[Segment], num_samples: int) -> np.ndarray:
    """How many of `segments` cover the centre of each 10 ms block."""
    return talkers_at([(s.start, s.end, s.speaker) for s in segments], block_centres(num_samples))


def evaluate(diarizer: Diarizer, conversations: list, plot: str | None = None) -> dict:
    """DER of each system, its parts, counts found, overlap detection and real-time factor over `conversations`."""
    errors = {name: None for name in SYSTEMS}
    counted, seconds, audio_seconds, overlap_hits, overlap_found, overlap_actual, speech_actual = 0, 0.0, 0.0, 0, 0, 0, 0
    for index, (signal, reference) in enumerate(conversations):
        speakers = len({s.speaker for s in reference})
        start = time.perf_counter()
        analysis = diarizer.analyse([signal])
        found = diarizer.segments(analysis, "conversation")
        seconds += time.perf_counter() - start
        audio_seconds += len(signal) / RATE
        if plot and index == 0:
            plot_timeline(plot, found, reference)
        hypotheses = {
            "auto": found,
            "given": Diarizer(diarizer.encoder, replace(diarizer.config, num_speakers=speakers)).segments(analysis, "conversation"),
            "exclusive": Diarizer(diarizer.encoder, replace(diarizer.config, exclusive=True)).segments(analysis, "conversation"),
            "one_speaker": [Segment(0.0, len(signal) / RATE, "everyone", "conversation")],
        }
        counted += len({s.speaker for s in found}) == speakers
        for name, hypothesis in hypotheses.items():
            error = diarization_error_rate(reference, hypothesis)
            errors[name] = error if errors[name] is None else errors[name] + error
        talkers = talking(reference, len(signal))
        truth, decided = talkers >= 2, talking(found, len(signal)) >= 2
        speech_actual += int(np.sum(talkers >= 1))
        overlap_hits += int(np.sum(truth & decided))
        overlap_found += int(decided.sum())
        overlap_actual += int(truth.sum())
    return {
        **{f"der_{name}": errors[name].rate for name in SYSTEMS},
        "error_parts_percent": {
            name: {part: 100 * getattr(e, part) / e.reference for part in ("missed", "false_alarm", "confusion")}
            for name, e in errors.items()
        },
        "count_accuracy": counted / len(conversations),
        "overlap_precision": overlap_hits / max(overlap_found, 1),
        "overlap_recall": overlap_hits / max(overlap_actual, 1),
        "overlap_share_of_speech": overlap_actual / max(speech_actual, 1),
        "real_time_factor": seconds / audio_seconds,
        "audio_seconds": audio_seconds,
    }


def long_recording(recordings_by_speaker: dict, minutes: float, seed: int) -> dict:
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
                    signal, _ = conversation(recordings_by_speaker, rng, load=reference_speech)
                    out.write(in_noise(signal, rng))
                    written += len(signal)
            started = time.perf_counter()
            log = Path(folder) / "diarize.log"
            with open(log, "w") as output:
                child = subprocess.Popen(
                    [sys.executable, "cli.py", "diarize", str(path), "--quiet"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
                )
                _, status, usage = os.wait4(child.pid, 0)  # this child's own peak resident memory
            if status:
                sys.exit(f"diarize failed on {path.name}: {log.read_text()[-1000:]}")
            turns = log.read_text().strip().splitlines()[-1]
            measured[f"{length:.0f}_min"] = {
                "seconds": round(time.perf_counter() - started, 1),
                "peak_memory_mb": round(usage.ru_maxrss / 1024, 1),
                "turns": turns,
            }
    return measured


def reference_speech(path) -> np.ndarray:
    return load_speech(path, trim="reference")


def plot_sweep(path: str, sweep: dict) -> None:
    """DER (count found: solid; given: dashed) against the SNR, one colour per noise kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for index, kind in enumerate(SWEEP_KINDS):
        points = sorted(
            ((SWEEP_PEAK_DBFS - c["floor_dbfs"], c) for c in sweep.values() if c["kind"] == kind and c["peak_dbfs"] == SWEEP_PEAK_DBFS),
            key=lambda p: p[0],
        )
        snr = [p for p, _ in points]
        colour = plt.get_cmap("tab10")(index)
        axes.plot(snr, [100 * c["der_auto"] for _, c in points], "o-", color=colour, label=f"{kind}, count found")
        axes.plot(snr, [100 * c["der_given"] for _, c in points], "s--", color=colour, alpha=0.6, label=f"{kind}, count given")
    axes.axhline(12, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("SNR: speech peak over noise RMS (dB)")
    axes.set_ylabel("DER (%)")
    axes.invert_xaxis()
    axes.legend(fontsize=7, ncol=2)
    save_figure(figure, path)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--checkpoint_file", help="model or NAME.fusion.json (default: the shipped default system)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--speakers",
        choices=["dev", "train", "asc"],
        default="dev",
        help="train: conversations of training speakers, to choose methods on; asc: the Arabic keyword speakers (another corpus)",
    )
    parser.add_argument("--clustering", choices=CLUSTERINGS, default=DiarizationConfig.clustering)
    parser.add_argument(
        "--long_minutes",
        type=float,
        default=0,
        help="also diarize one recording this long (conversations end to end) with the command line, against one a sixth as long: peak memory and time",
    )
    parser.add_argument("--no_resegment", action="store_true", help="skip the frame-level resegmentation")
    parser.add_argument("--overlap_threshold", type=float, default=DiarizationConfig.overlap_threshold)
    parser.add_argument(
        "--ahc_threshold",
        type=float,
        help="a fixed clustering threshold instead of the calibrated one that follows the SNR (for comparison)",
    )
    parser.add_argument("--plot", help="write the first conversation's timeline (found turns above the reference) to this PNG")
    parser.add_argument("--kind", default="white", help="noise kind of the floor (deep_speaker.data.conversations.NOISE_KINDS)")
    parser.add_argument("--noise_dbfs", type=float, default=-60.0, help="noise floor, RMS dBFS (default -60)")
    parser.add_argument("--peak_dbfs", type=float, help="scale each conversation's speech to peak here first (default: as recorded)")
    parser.add_argument("--sweep", action="store_true", help="the noise sweep (kinds x floors at -6 dBFS peaks) and the default condition")
    parser.add_argument("--sweep_plot", help="write the sweep's DER against SNR to this PNG")
    return parser.parse_args()


def sweep_summary(results: dict) -> dict:
    """Median and worst DER over the sweep's conditions (speech peaking at the sweep's level)."""
    swept = [r for r in results.values() if r["peak_dbfs"] == SWEEP_PEAK_DBFS]
    return {
        "median_der_auto": float(np.median([r["der_auto"] for r in swept])),
        "worst_der_auto": max(r["der_auto"] for r in swept),
        "worst_der_given": max(r["der_given"] for r in swept),
    }


def result_name(args) -> str:
    """The results file's name: the speakers, clustering and condition when they are not the defaults."""
    condition = (
        ""
        if (args.kind, args.noise_dbfs, args.peak_dbfs) == ("white", -60.0, None)
        else f"_{args.kind.replace(' + ', '_')}{args.noise_dbfs:g}" + ("" if args.peak_dbfs is None else f"_peak{args.peak_dbfs:g}")
    )
    stem = (
        "diarization"
        if args.speakers == "dev"
        else f"diarization_{args.speakers}_{args.clustering}{'_no_resegment' if args.no_resegment else ''}"
    )
    fixed = "" if args.ahc_threshold is None else f"_threshold{args.ahc_threshold:g}"
    return stem + condition + fixed + ("_sweep" if args.sweep else "")


def main() -> None:
    args = parse_arguments()
    data = require_shared_data()
    by_speaker: dict[str, list] = {}
    for utterance in discover_utterances(data / "asc" if args.speakers == "asc" else data / "speechocean762" / args.speakers):
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    rng = np.random.default_rng(args.seed)
    clean = [conversation(by_speaker, rng, load=reference_speech) for _ in range(args.conversations)]
    sources = noise_sources(data)
    config = DiarizationConfig(
        clustering=args.clustering,
        resegment=not args.no_resegment,
        overlap_threshold=args.overlap_threshold,
        ahc_threshold=args.ahc_threshold,
    )
    diarizer = load_diarizer(args.checkpoint_file, config)
    conditions = [(args.kind, args.noise_dbfs, args.peak_dbfs)]
    if args.sweep:
        conditions += [(kind, floor, SWEEP_PEAK_DBFS) for kind in SWEEP_KINDS for floor in SWEEP_FLOORS_DBFS]
    results = {}
    for number, (kind, floor, peak) in enumerate(conditions):
        condition_rng = np.random.default_rng([args.seed, number])
        conversations = [
            (in_noise(signal, condition_rng, kind, floor, peak, sources), [Segment(a, b, s, "conversation") for a, b, s in turns])
            for signal, turns in clean
        ]
        name = f"{kind} {floor:g} dBFS" + ("" if peak is None else f", peak {peak:g}")
        results[name] = {
            "kind": kind,
            "floor_dbfs": floor,
            "peak_dbfs": peak,
            **evaluate(diarizer, conversations, args.plot if number == 0 else None),
        }
        r = results[name]
        print(
            f"  {name}: DER {100 * r['der_auto']:.2f} % count found ({100 * r['count_accuracy']:.0f} % right), {100 * r['der_given']:.2f} % given, "
            f"{100 * r['der_exclusive']:.2f} % exclusive; overlap precision {r['overlap_precision']:.2f} recall {r['overlap_recall']:.2f}; RTF {r['real_time_factor']:.3f}",
            flush=True,
        )
    headline = results[next(iter(results))]
    result = {
        "speakers": args.speakers,
        "clustering": args.clustering,
        "resegment": not args.no_resegment,
        "overlap_threshold": args.overlap_threshold,
        "ahc_threshold": args.ahc_threshold,
        "conversations": args.conversations,
        "model": diarizer.encoder.fingerprint,
        **headline,
    }
    if args.sweep:
        result["sweep"], result["sweep_summary"] = results, sweep_summary(results)
        if args.sweep_plot:
            plot_sweep(args.sweep_plot, results)
    if args.long_minutes:
        result["long_recording"] = long_recording(by_speaker, args.long_minutes, args.seed)
    path = write_result(result_name(args), result)
    parts = headline["error_parts_percent"]["auto"]
    long_line = "".join(
        f"; {name.replace('_', ' ')}: {v['seconds']} s, peak {v['peak_memory_mb']:.0f} MB"
        for name, v in result.get("long_recording", {}).items()
    )
    sweep_line = (
        ""
        if not args.sweep
        else "; sweep DER count found median {:.2f} %, worst {:.2f} %, given worst {:.2f} %".format(
            *(100 * v for v in result["sweep_summary"].values())
        )
    )
    print(
        f"diarization ({args.speakers} speakers, {args.clustering}{', no resegmentation' if args.no_resegment else ''}, {args.conversations} conversations, {headline['audio_seconds'] / 60:.1f} min, "
        f"{next(iter(results))}): DER {100 * headline['der_auto']:.2f} % with the count found ({100 * headline['count_accuracy']:.0f} % counts right; missed {parts['missed']:.2f}, "
        f"false alarm {parts['false_alarm']:.2f}, confusion {parts['confusion']:.2f}), {100 * headline['der_given']:.2f} % with it given, {100 * headline['der_exclusive']:.2f} % exclusive, "
        f"one-speaker anchor {100 * headline['der_one_speaker']:.2f} %; overlap precision {headline['overlap_precision']:.2f}, recall {headline['overlap_recall']:.2f}; "
        f"real-time factor {headline['real_time_factor']:.3f}{sweep_line}{long_line} [{path.name}]"
    )


if __name__ == "__main__":
    main()
