"""What many commands share: the model, store, scorer and verifier a command's flags name, and argument types."""

from __future__ import annotations

import argparse

from ..exported import DEFAULT_RUNTIME, RUNTIMES
from ..scoring.backends import SCORERS


def checkpoint_path(args):
    from ..score_fusion import DEFAULT_SYSTEM

    return args.checkpoint_file or DEFAULT_SYSTEM


def open_encoder(args):
    from ..assembly import load_encoder

    return load_encoder(
        checkpoint_path(args),
        crop_frames=args.crop_frames,
        trim=args.trim,
        bfloat16=args.bfloat16,
        runtime=args.runtime,
    )


def add_cluster_arguments(parser: argparse.ArgumentParser, columns: str, part_size: int) -> None:
    """A corpus job on Ray (`embed-corpus`, `diarize-corpus`): its sources, output folder and cluster options."""
    parser.add_argument("sources", nargs="+", help="folders, wav.scp or .txt / .lst lists of paths, audio files")
    parser.add_argument("--out-dir", required=True, help=f"Parquet parts (utterance_id, path, {columns}, refused) and manifest.json")
    parser.add_argument(
        "--address", help="a running Ray cluster (ray://HEAD:10001, or auto on a cluster node); default: Ray on this machine"
    )
    parser.add_argument("--workers", type=whole_number(1, 4096), default=1, help="models running at once (Ray actors)")
    parser.add_argument(
        "--part-size", type=whole_number(1, 1_000_000), default=part_size, help="recordings per Parquet part: what an interruption can lose"
    )


def cluster_options(args) -> dict:
    """The keyword arguments of a corpus job (`cluster.embed_corpus`, `cluster.diarize_corpus`) from its flags."""
    return {"address": args.address, "workers": args.workers, "part_size": args.part_size, "progress": not args.quiet}


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """The command's own --quiet: the same as the global one (`deep-speaker --quiet COMMAND`), which it leaves set."""
    parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")


def require_inputs(paths) -> None:
    """Each input recording exists and has a readable audio header: checked before any model loads."""
    from ..audio import require_readable

    for path in paths:
        require_readable(path)


def open_store(args, encoder=None, create: bool = False):
    """The enrolment store; only `enroll` creates one (a missing store is an error, found before the model loads)."""
    from ..assembly import open_registry
    from ..enrol import require_store

    if not create:
        require_store(args.store)
    return open_registry(args.store, encoder or open_encoder(args), create=create)


def open_scorer(args, encoder):
    from ..scoring import load_scorer

    return load_scorer(args.scorer, encoder.fingerprint)


def open_verifier(args, encoder=None):
    from ..assembly import build_verifier

    encoder = encoder or open_encoder(args)
    return build_verifier(encoder, open_scorer(args, encoder), args.operating_point, args.threshold, getattr(args, "detect_spoof", None))


def parse_bool(text: str) -> bool:
    """true/false, yes/no, 1/0 (plain `bool` would take any non-empty text, 'false' too, as True)."""
    choices = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return choices[text.lower()]


def whole_number(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(
                f"must be between {minimum} and {maximum}, got {value}"
                if maximum is not None
                else f"must be at least {minimum}, got {value}"
            )
        return value

    return parse


def number_in(low: float, high: float, low_open: bool = False):
    """An argparse type: a finite number in [low, high] ((low, high] with `low_open`); NaN and infinity refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > low if low_open else value >= low) or not value <= high:  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value

    return parse


SEED = whole_number(0, 2**32 - 1)


COUNT = whole_number(1)


WEIGHT = number_in(0, 1e6, low_open=True)


COSINE = number_in(-1, 1)


PROBABILITY = number_in(0, 1)


SNR_DB = number_in(0, 120)


def add_encoder_arguments(parser: argparse.ArgumentParser, keras_only: bool = False) -> None:
    """The model a command runs and how; `keras_only`: the command needs the Keras model itself (gradients, features)."""
    parser.add_argument(
        "--checkpoint-file",
        help="model: Keras 2 .h5 (reference), Keras 3 .keras, a score fusion NAME.fusion.json, or an export (.onnx, .tflite, SavedModel folder) (default: the shipped default system)",
    )
    parser.add_argument("--crop-frames", type=int, default=None, help="reference-style crop of N frames (default: whole utterance)")
    parser.add_argument("--bfloat16", action="store_true", help="compute in bfloat16 (faster on CPUs with AVX512_BF16)")
    if keras_only:
        parser.set_defaults(runtime="keras")
        return
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="onnx (default): the model's ONNX Runtime copy (shipped beside it, or exported once and cached), no TensorFlow; "
        "keras: Keras on TensorFlow (needed for --crop-frames and --bfloat16)",
    )


def add_scorer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scorer", choices=sorted(SCORERS), default="cosine", help="score back end (all but cosine need `fit-backend` first)"
    )


def add_store_arguments(parser: argparse.ArgumentParser, keras_only: bool = False) -> None:
    parser.add_argument(
        "--store",
        default="speakers.db",
        help="enrolment store: an SQLite file (default: ./speakers.db) or a PostgreSQL database postgresql://USER@HOST:PORT/DB "
        "(pgvector; shared by many processes and machines)",
    )
    add_encoder_arguments(parser, keras_only)


def add_decision_arguments(parser: argparse.ArgumentParser, keras_only: bool = False) -> None:
    from ..scoring.calibration import OPERATING_POINTS

    parser.add_argument(
        "--operating-point",
        dest="operating_point",
        choices=OPERATING_POINTS,
        default="far1",
        help="calibrated threshold: false accepts = misses (eer), or 1 %% / 0.1 %% false accepts (default far1)",
    )
    parser.add_argument("--threshold", type=float, default=None, help="explicit score threshold (overrides the operating point)")
    parser.add_argument(
        "--detect-spoof",
        dest="detect_spoof",
        help="a spoof detector (train-detector): recordings it flags are rejected with the reason",
    )
    add_store_arguments(parser, keras_only)
    add_scorer_argument(parser)
