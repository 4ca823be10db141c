"""Commands that prepare corpora: the feature cache, TFRecord shards, augmented copies."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..features import ENERGY_SCALES, NORMALISATIONS
from .common import COUNT, PROBABILITY, add_quiet_argument, number_in


def _feature_config(args):
    """The FeatureConfig of build-features / build-shards: the reference's, or the --recipe's, then the flags given
    (`add_feature_arguments`; the trim is the global --trim)."""
    from dataclasses import replace

    from ..config import recipe_features
    from ..features import FeatureConfig

    config = recipe_features(args.recipe) if args.recipe else FeatureConfig()
    given = {"trim": args.trim, "energies": args.energies, "normalisation": args.normalisation}
    return replace(config, **{name: value for name, value in given.items() if value is not None})


def cmd_build_features(args) -> int:
    from ..data.cache import build_feature_cache

    summary = build_feature_cache(args.audio_dir, args.working_dir, _feature_config(args), workers=args.workers, progress=not args.quiet)
    print(summary)
    print(f"manifest: {os.path.join(args.working_dir, 'manifest.csv')}")
    return 0


def cmd_build_shards(args) -> int:
    from ..tf.shards import INDEX, SHARDS_DIR, build_shards, parse_part

    part = parse_part(args.shard)
    record = build_shards(
        args.audio_dir,
        args.working_dir,
        _feature_config(args),
        part,
        args.utterances_per_file,
        args.validation_fraction,
        args.workers,
        progress=not args.quiet,
    )
    counts = record["utterances"]
    print(
        f"part {part[0]}/{part[1]}: {len(record['speakers'])} speakers, {counts['train']} training and {counts['validation']} held-out utterances, {len(record['failures'])} failed"
    )
    for name in record["rebuilt"]:
        print(f"  REBUILT {name}: it was damaged (size or SHA-256 not as written)")
    for path, reason in record["failures"].items():
        print(f"  FAILED {path}: {reason}")
    index = Path(args.working_dir) / SHARDS_DIR / INDEX
    print(f"index: {index}" if index.is_file() else "index: written when every part is finished")
    return 0


def cmd_augment_cache(args) -> int:
    from ..data.augment import SPEEDS, WaveformAugmentation
    from ..data.copies import build_augmented_copies

    probabilities = ("noise_probability", "reverb_probability", "channel_probability")
    augmentation = WaveformAugmentation(**{name: getattr(args, name) for name in probabilities if getattr(args, name) is not None})
    computed = build_augmented_copies(
        args.working_dir,
        args.copies,
        augmentation,
        SPEEDS if args.speed_perturbation else (1.0,),
        args.noise_dir or "",
        args.rir_dir or "",
        workers=args.workers,
        progress=not args.quiet,
    )
    print(f"{computed} augmented copies computed in {args.working_dir}/augmented (train with --cached-copies true)")
    return 0


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature recipe of a cache or shards (the trim comes from the global --trim)."""
    parser.add_argument(
        "--recipe", help="a training recipe (YAML): cache the features its `features` group asks for (flags below override it)"
    )
    parser.add_argument(
        "--energies", choices=ENERGY_SCALES, default=None, help="filterbank energies: linear (the reference's, default) or log"
    )
    parser.add_argument(
        "--normalisation", choices=NORMALISATIONS, default=None, help="standardise each frame (the reference's, default) or the utterance"
    )


def register(commands) -> None:
    _build_features_parser(commands)
    _build_shards_parser(commands)
    _augment_cache_parser(commands)


def _build_features_parser(commands) -> None:
    build = commands.add_parser(
        "build-features",
        aliases=["build-mfcc", "build-mfcc-cache"],
        help="cache the filterbank features of a corpus (build-mfcc: the reference's name)",
    )
    build.add_argument("--audio-dir", required=True, help="speaker folders, Kaldi data dir / wav.scp, or path,speaker CSV")
    build.add_argument("--working-dir", required=True)
    build.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    add_feature_arguments(build)
    add_quiet_argument(build)
    build.set_defaults(handler=cmd_build_features)


def _build_shards_parser(commands) -> None:
    shards = commands.add_parser(
        "build-shards", help="TFRecord feature shards for streamed training at scale (split across machines with --shard i/n)"
    )
    shards.add_argument("--audio-dir", required=True, help="speaker folders, Kaldi data dir / wav.scp, or path,speaker CSV")
    shards.add_argument("--working-dir", required=True, help="shards go to WORKING_DIR/shards (shared by all machines)")
    shards.add_argument("--shard", default="0/1", help="this machine's part i/n of the speakers (0-based; default 0/1: all)")
    shards.add_argument("--utterances-per-file", type=COUNT, default=500)
    shards.add_argument(
        "--validation-fraction",
        type=number_in(0, 0.9, low_open=True),
        default=0.2,
        help="each speaker's last utterances held out for validation",
    )
    shards.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    add_feature_arguments(shards)
    add_quiet_argument(shards)
    shards.set_defaults(handler=cmd_build_shards)


def _augment_cache_parser(commands) -> None:
    copies = commands.add_parser("augment-cache", help="augmented copies of every cached utterance (speed, rooms, noise, channels)")
    copies.add_argument("--working-dir", required=True, help="a feature cache from build-features")
    copies.add_argument("--copies", type=COUNT, default=4)
    copies.add_argument("--speed-perturbation", action="store_true", help="copies cycle through speeds 1.0, 0.9, 1.1 (new classes)")
    copies.add_argument("--noise-dir", help="noise recordings (default: babble and coloured noise)")
    copies.add_argument("--rir-dir", help="room impulse responses (default: simulated rooms)")
    for name in ("noise_probability", "reverb_probability", "channel_probability"):
        copies.add_argument(f"--{name}", type=PROBABILITY, default=None, help="default: the augmentation's (deep_speaker/data/augment.py)")
    copies.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    add_quiet_argument(copies)
    copies.set_defaults(handler=cmd_augment_cache)
