"""Commands that train (every phase of the one driver: softmax, triplet, head, detector, overlap) and test a model."""

from __future__ import annotations

import argparse

from ..errors import DeepSpeakerError
from .common import SEED, add_encoder_arguments, add_quiet_argument, checkpoint_path, open_encoder, parse_bool


def recipe_of(args):
    """The recipe of the command's phase: its defaults, then --recipe, then the recipe flags given."""
    from ..config import flat_options, load_recipe

    return load_recipe(args.phase, args.recipe, **{name: getattr(args, name) for name in flat_options(args.phase)})


def cmd_train(args) -> int:
    from ..tf import train

    recipe = recipe_of(args)
    if args.phase == "detector":
        held_out = [f for f in (args.held_out or "").split(",") if f]
        best = train.train_detector(
            args.working_dir, args.manifest, recipe, held_out, progress=not args.quiet, run_name=args.run_name or "detector"
        )
        print(f"best detector: {best} (threshold beside it)")
        return 0
    if args.phase == "overlap":
        best = train.train_overlap(args.working_dir, args.audio_dir, recipe, progress=not args.quiet, run_name=args.run_name or "overlap")
        print(f"best overlap detector: {best}")
        return 0
    if args.phase == "head":
        paths = train.train_head(args.working_dir, args.checkpoint_file, recipe, progress=not args.quiet)
        for fusion, path in paths.items():
            print(f"fused model ({fusion}): {path}" + ("  <- selected by --fusion" if fusion == recipe.head.fusion else ""))
        return 0
    extra = {"initial_checkpoint": args.initial_checkpoint} if args.phase in ("triplet", "classification") else {}
    if args.phase == "classification":
        from ..assembly import load_teacher

        extra.update(run_name=args.run_name, teacher=load_teacher(recipe))
    best = train.PHASES[args.phase](args.working_dir, recipe, progress=not args.quiet, **extra)
    print(f"best {args.phase} checkpoint: {best}")
    return 0


def cmd_test_model(args) -> int:
    from ..data.split import SpeakerFeatures
    from ..evaluation import closed_set_metrics
    from ..model_files import check_features

    data = SpeakerFeatures(args.working_dir)
    encoder = open_encoder(args)
    if getattr(encoder, "speaker_model", None) is None:
        raise DeepSpeakerError(
            f"{checkpoint_path(args)}: test-model runs one Keras model on cached features (not a score fusion or an exported model)"
        )
    check_features(encoder.speaker_model, data.feature_config, checkpoint_path(args))
    embeddings = encoder.embed_features([data.features[i] for i in data.validation])
    print(closed_set_metrics(embeddings, data.labels[data.validation], seed=args.seed))
    return 0


FEATURE_CACHE = "feature cache from build-features (or shards from build-shards with --input shards); runs are written below it"
RUNS_BELOW = "the run's folder (--run-name) is written below it: best.keras, last.keras (resume point), training.csv"


def add_recipe_arguments(parser: argparse.ArgumentParser, phase: str, handler=cmd_train, working_dir: str = FEATURE_CACHE) -> None:
    """One flag per recipe option of the phase (default None = keep the recipe's value), --recipe, --working-dir."""
    from ..config import flat_options

    parser.add_argument("--working-dir", required=True, help=working_dir)
    parser.add_argument("--recipe", help="YAML recipe (nested by group or flat)")
    add_quiet_argument(parser)
    for name, (group, _, value_type, default) in flat_options(phase).items():
        parser.add_argument(
            f"--{name}", type=parse_bool if value_type is bool else value_type, default=None, help=f"{group}; default {default}"
        )
    parser.set_defaults(handler=handler, phase=phase)


def register(commands) -> None:
    _train_detector_parser(commands)
    _train_overlap_parser(commands)
    _train_softmax_parser(commands)
    _train_triplet_parser(commands)
    _train_head_parser(commands)
    _test_model_parser(commands)


def _train_detector_parser(commands) -> None:
    detector = commands.add_parser("train-detector", help="train the spoof and adversarial-example detector on a make-spoofs manifest")
    add_recipe_arguments(detector, "detector", working_dir=RUNS_BELOW)
    detector.add_argument("--manifest", required=True, help="manifest.csv of make-spoofs")
    detector.add_argument("--held-out", help="comma-separated families never seen in training (leave-one-family-out testing)")
    detector.add_argument("--run-name", help="the run's folder under WORKING_DIR (default detector)")


def _train_overlap_parser(commands) -> None:
    overlap = commands.add_parser(
        "train-overlap", help="train diarization's overlapped-speech detector on synthetic conversations of a corpus's speakers"
    )
    add_recipe_arguments(overlap, "overlap", working_dir=RUNS_BELOW)
    overlap.add_argument("--audio-dir", required=True, help="training corpus: one subfolder of recordings per speaker")
    overlap.add_argument("--run-name", help="the run's folder under WORKING_DIR (default overlap)")


def _train_softmax_parser(commands) -> None:
    softmax = commands.add_parser("train-softmax", help="classification training (softmax, AM- or AAM-softmax) on a feature cache")
    add_recipe_arguments(softmax, "classification")
    softmax.add_argument(
        "--initial-checkpoint",
        help="fine-tune this speaker model (same backbone and features; margin classes start at class means) instead of training from scratch",
    )
    softmax.add_argument(
        "--run-name", help="the run's folder under WORKING_DIR (default softmax), e.g. softmax_lmf for large-margin fine-tuning"
    )


def _train_triplet_parser(commands) -> None:
    triplet = commands.add_parser("train-triplet", help="hard-negative triplet training from the classification checkpoint")
    add_recipe_arguments(triplet, "triplet")
    triplet.add_argument("--initial-checkpoint", help="default: WORKING_DIR/softmax/best.keras")


def _train_head_parser(commands) -> None:
    head = commands.add_parser("train-head", help="train a dense or TDNN refinement head on a base checkpoint")
    add_recipe_arguments(head, "head")
    head.add_argument("--checkpoint-file", required=True, help="base model (triplet or softmax checkpoint)")


def _test_model_parser(commands) -> None:
    test = commands.add_parser("test-model", help="reference closed-set test on the held-out utterances of the training speakers")
    test.add_argument("--working-dir", required=True)
    test.add_argument("--seed", type=SEED, default=123)
    add_encoder_arguments(test, keras_only=True)
    test.set_defaults(handler=cmd_test_model)
