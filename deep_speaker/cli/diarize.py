"""Commands for who spoke when: diarize a recording, score a diarization."""

from __future__ import annotations

import sys
from pathlib import Path

from ..diarization.pipeline import CLUSTERINGS, MAX_SPEAKERS, DiarizationConfig
from ..errors import ConfigError
from ..exported import DEFAULT_RUNTIME, RUNTIMES
from ..vad import VAD_METHODS
from .common import COSINE, add_cluster_arguments, add_quiet_argument, checkpoint_path, cluster_options, number_in, whole_number


def diarization_config(args) -> DiarizationConfig:
    """The `DiarizationConfig` of the options `add_diarization_arguments` adds."""
    return DiarizationConfig(
        window=args.window,
        hop=args.hop,
        clustering=args.clustering,
        num_speakers=args.num_speakers,
        min_speakers=args.min_speakers,
        max_speakers=args.max_speakers,
        ahc_threshold=args.threshold,
        resegment=args.resegment,
        vad=args.vad,
        exclusive=args.exclusive,
        overlap_threshold=args.overlap_threshold,
    )


def cmd_diarize_corpus(args) -> int:
    from ..cluster import diarize_corpus, finished_utterances

    config = diarization_config(args)
    manifest = diarize_corpus(
        args.sources, args.out_dir, checkpoint_path(args), args.runtime, config, args.overlap_detector, **cluster_options(args)
    )
    print(f"{len(finished_utterances(args.out_dir))} recordings diarized in {args.out_dir} ({manifest})")
    return 0


def cmd_diarize(args) -> int:
    from ..audio import MAX_STREAM_SECONDS, require_readable
    from ..diarization import write_rttm
    from ..diarization.output import plot_timeline, segments_json, write_json

    config = diarization_config(args)
    require_readable(args.audio, MAX_STREAM_SECONDS)  # before the model
    from ..assembly import load_diarizer

    diarizer = load_diarizer(checkpoint_path(args), config, args.overlap_detector, runtime=args.runtime)
    segments = diarizer.diarize(args.audio, progress=not args.quiet)
    if args.json == "-":
        print(segments_json(segments))
    else:
        for segment in segments:
            print(f"{segment.start:8.2f} {segment.end:8.2f}  {segment.speaker}")
        print(f"{len({s.speaker for s in segments})} speaker(s), {len(segments)} turn(s)")
    for path, write in ((args.rttm, write_rttm), (args.json if args.json != "-" else None, write_json), (args.plot, plot_timeline)):
        if path:
            write(path, segments)
    return 0


def cmd_score_diarization(args) -> int:
    import json

    from ..diarization import DiarizationError, read_rttm, read_uem, score_recordings
    from ..fileio import atomic_write_bytes

    reference, hypothesis = read_rttm(args.reference), read_rttm(args.hypothesis)
    if not reference:
        raise ConfigError(f"{args.reference}: no SPEAKER lines: nothing to score against")
    scores = score_recordings(reference, hypothesis, args.collar, args.skip_overlap, read_uem(args.uem) if args.uem else None)
    unscored = sorted({s.recording for s in hypothesis} - set(scores))
    if unscored:
        print(
            f"warning: {len(unscored)} recording(s) of {args.hypothesis} are not in the reference, not scored: {', '.join(unscored[:5])}",
            file=sys.stderr,
        )
    for name, error in scores.items():
        print(f"{name}\t{error}")
    total = sum(scores.values(), DiarizationError(0.0, 0.0, 0.0, 0.0))
    print(f"TOTAL ({len(scores)} recording(s), collar {args.collar:g} s{', overlap skipped' if args.skip_overlap else ''})\t{total}")
    if args.json:
        document = {
            "collar": args.collar,
            "skip_overlap": args.skip_overlap,
            "total": total.summary(),
            "recordings": {n: e.summary() for n, e in scores.items()},
        }
        atomic_write_bytes(Path(args.json), json.dumps(document, indent=2).encode())
    return 0


def register(commands) -> None:
    _diarize_parser(commands)
    _diarize_corpus_parser(commands)
    _score_diarization_parser(commands)


def add_diarization_arguments(parser) -> None:
    """The diarization options (`diarization_config`) shared by `diarize` and `diarize-corpus`."""
    parser.add_argument("--num-speakers", dest="num_speakers", type=whole_number(1, MAX_SPEAKERS), help="the speaker count, if known")
    speakers = whole_number(1, MAX_SPEAKERS)
    parser.add_argument("--min-speakers", dest="min_speakers", type=speakers, default=DiarizationConfig.min_speakers)
    parser.add_argument("--max-speakers", dest="max_speakers", type=speakers, default=DiarizationConfig.max_speakers)
    parser.add_argument(
        "--clustering",
        choices=CLUSTERINGS,
        default=DiarizationConfig.clustering,
        help="agglomerative (calibrated threshold) or spectral (eigengap)",
    )
    parser.add_argument(
        "--threshold", type=COSINE, help="ahc: cosine score to join clusters (default: the model's calibrated EER threshold)"
    )
    parser.add_argument("--window", type=number_in(0.2, 30), default=DiarizationConfig.window, help="seconds per embedded window")
    parser.add_argument("--hop", type=number_in(0.05, 30), default=DiarizationConfig.hop, help="seconds between windows")
    parser.add_argument("--no-resegment", dest="resegment", action="store_false", help="skip the frame-level resegmentation")
    parser.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default=DiarizationConfig.vad,
        help="voice-activity detector (default %(default)s: see docs/diarization.md)",
    )
    parser.add_argument(
        "--exclusive", action="store_true", help="one speaker at every instant (for ASR): overlapped speech is not given a second speaker"
    )
    parser.add_argument(
        "--overlap-detector",
        dest="overlap_detector",
        help="a train-overlap best.keras (default: the shipped overlap detector)",
    )
    parser.add_argument(
        "--overlap-threshold",
        dest="overlap_threshold",
        type=number_in(0.01, 0.99),
        default=DiarizationConfig.overlap_threshold,
        help="overlap probability from which speech gets a second speaker (default %(default)s)",
    )


def add_model_arguments(parser) -> None:
    """The models a diarizer runs and how: shared by `diarize` and `diarize-corpus`."""
    add_quiet_argument(parser)
    parser.add_argument("--checkpoint-file", help="model or NAME.fusion.json (default: the shipped default system)")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="onnx (default): the models and the overlap detector through ONNX Runtime (their copies), no TensorFlow; keras: Keras",
    )


def _diarize_parser(commands) -> None:
    diarize = commands.add_parser("diarize", help="who spoke when: speaker turns of a recording (RTTM, JSON, timeline plot)")
    diarize.add_argument("audio")
    diarize.add_argument("--rttm", help="write the turns as RTTM")
    diarize.add_argument("--json", help="write the turns as JSON to this file, or to standard output (instead of text) with -")
    diarize.add_argument("--plot", help="write a timeline PNG")
    add_diarization_arguments(diarize)
    add_model_arguments(diarize)
    diarize.set_defaults(handler=cmd_diarize)


def _diarize_corpus_parser(commands) -> None:
    corpus = commands.add_parser(
        "diarize-corpus", help="diarize a corpus on Ray (this machine, or a cluster with --address) into Parquet parts; resumable"
    )
    add_cluster_arguments(corpus, "turns as JSON", 64)
    add_diarization_arguments(corpus)
    add_model_arguments(corpus)
    corpus.set_defaults(handler=cmd_diarize_corpus)


def _score_diarization_parser(commands) -> None:
    scoring = commands.add_parser(
        "score-diarization",
        help="DER (missed, false alarm, confusion) and JER of RTTM turns against a reference, per recording and in total",
    )
    scoring.add_argument("reference", help="reference RTTM")
    scoring.add_argument("hypothesis", help="hypothesis RTTM (e.g. from diarize --rttm)")
    scoring.add_argument(
        "--collar",
        type=number_in(0, 10),
        default=0.25,
        help="seconds either side of each reference boundary left unscored (md-eval's; default 0.25)",
    )
    scoring.add_argument("--skip-overlap", dest="skip_overlap", action="store_true", help="leave overlapped reference speech unscored")
    scoring.add_argument("--uem", help="UEM file: score only its regions ('<recording> <channel> <start> <end>' per line)")
    scoring.add_argument("--json", help="write the numbers here")
    scoring.set_defaults(handler=cmd_score_diarization)
