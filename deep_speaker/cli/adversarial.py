"""Commands that attack the verifier, convert voices, build spoof corpora and harden models against them."""

from __future__ import annotations

import sys

from ..adversarial.attacks import METHODS
from ..adversarial.conversion import CONVERSION_METHODS
from ..errors import DeepSpeakerError
from .common import (
    COUNT,
    SEED,
    SNR_DB,
    add_decision_arguments,
    add_encoder_arguments,
    add_quiet_argument,
    number_in,
    open_encoder,
    open_store,
    open_verifier,
    whole_number,
)
from .train import RUNS_BELOW, add_recipe_arguments, recipe_of


def _attack_threshold(verifier) -> tuple[float, str]:
    """The threshold an attack aims past, and how it was chosen; an error when the model has none."""
    threshold, source = verifier.threshold()
    if threshold is None:
        raise DeepSpeakerError(f"no threshold to attack: {source}", cli_hint="calibrate the model or pass --threshold")
    return threshold, source


def cmd_attack(args) -> int:
    from ..adversarial import AttackConfig
    from ..assembly import attack
    from ..audio import check_audio_target, write_audio

    check_audio_target(args.out)
    targeted = args.target_speaker is not None or args.target_file is not None
    verifier = open_verifier(args)
    threshold, source = _attack_threshold(verifier)
    name = args.target_speaker if targeted else args.speaker
    if name is not None:
        with open_store(args, verifier.encoder) as registry:
            reference = registry.embedding(name)
    else:
        reference = verifier.encoder.embed(args.target_file if targeted else args.reference_file)
    config = AttackConfig(args.method, args.snr, args.epsilon, args.steps, random_starts=args.random_starts, seed=args.seed)
    generator = None
    if args.method == "advgan":
        from ..models.advgan import load_generator

        if not args.generator:
            raise DeepSpeakerError("--method advgan needs --generator G.keras (made by train-advgan)")
        generator = load_generator(args.generator)
    clean, result = attack(
        verifier.encoder, args.audio, reference, threshold, targeted, config, generator, progress=sys.stderr.isatty() and not args.quiet
    )
    write_audio(args.out, result.waveform)
    goal = f"accepted as {name or args.target_file}" if targeted else f"rejected from {name or args.reference_file}"
    print(
        f"{args.method}: score {result.score_before:.4f} -> {result.score_after:.4f} (threshold {threshold:.4f}, {source}); "
        f"{'succeeded' if result.success else 'failed'} to be {goal}"
    )
    print(
        f"wrote {args.out}: SNR {result.snr_db(clean):.1f} dB, max |perturbation| {abs(result.waveform - clean).max():.4f}, "
        f"{result.steps} steps, {result.queries} queries, {result.seconds:.1f} s"
    )
    return 0


def cmd_train_advgan(args) -> int:
    from ..tf.advgan import train_advgan

    best = train_advgan(args.working_dir, args.audio_dir, open_encoder(args), recipe_of(args), not args.quiet, args.run_name)
    print(f"generator: {best} (`attack IN OUT --method advgan --generator {best} --target-file T`)")
    return 0


def cmd_adversarial_finetune(args) -> int:
    from ..tf.adversarial_training import adversarial_finetune

    best = adversarial_finetune(args.working_dir, args.checkpoint_file, args.audio_dir, recipe_of(args), not args.quiet, args.run_name)
    print(f"fine-tuned model: {best} (a new fingerprint: calibrate it before use)")
    return 0


def cmd_make_spoofs(args) -> int:
    from ..adversarial.spoofs import build_spoof_corpus
    from ..assembly import attack
    from ..data.corpus import discover_utterances

    verifier = open_verifier(args)
    threshold, _ = _attack_threshold(verifier)
    recordings = [(u.path, u.speaker) for u in discover_utterances(args.audio_dir)]
    families = [f for f in args.families.split(",") if f]
    converter = None
    if args.converter:
        from ..models.again_vc import load_converter

        converter = load_converter(args.converter)
    manifest = build_spoof_corpus(
        recordings,
        args.out,
        verifier.encoder,
        threshold,
        families,
        args.per_family,
        args.seed,
        progress=not args.quiet,
        converter=converter,
        attack=attack,
    )
    print(f"wrote {manifest}: {len(recordings)} genuine recordings and up to {args.per_family} spoofs per family ({', '.join(families)})")
    return 0


def cmd_detect(args) -> int:
    from ..adversarial.detector import SpoofDetector

    detector = SpoofDetector(args.detector, args.threshold)
    for path in args.files:
        score = detector.score(path)
        print(f"{path}\tscore {score:+.3f}\t{'spoof' if score >= detector.threshold else 'genuine'} (threshold {detector.threshold:+.3f})")
    return 0


def cmd_convert_voice(args) -> int:
    from ..adversarial.conversion import convert_voice
    from ..audio import check_audio_target, read_audio, write_audio

    check_audio_target(args.out)
    converter = None
    if args.method == "again" and args.converter:
        from ..models.again_vc import load_converter

        converter = load_converter(args.converter)
    write_audio(args.out, convert_voice(args.method, read_audio(args.source), read_audio(args.target), converter))
    print(f"wrote {args.out}: {args.source} in the voice of {args.target} ({args.method})")
    return 0


def cmd_train_again(args) -> int:
    from ..tf.again_vc import train_again

    best = train_again(args.working_dir, args.audio_dir, recipe_of(args), not args.quiet, args.run_name)
    print(f"converter: {best} (`convert-voice SOURCE TARGET OUT --method again --converter {best}`)")
    return 0


def register(commands) -> None:
    _attack_parser(commands)
    _train_advgan_parser(commands)
    _train_again_parser(commands)
    _adversarial_finetune_parser(commands)
    _make_spoofs_parser(commands)
    _detect_parser(commands)
    _convert_voice_parser(commands)


def _attack_parser(commands) -> None:
    attack = commands.add_parser(
        "attack", help="adversarial example: make a recording accepted as a target speaker (or rejected from its own)"
    )
    attack.add_argument("audio")
    attack.add_argument("out", help="the attacked recording (16-bit WAV/FLAC)")
    attack.add_argument("--method", choices=METHODS, default="pgd")
    attack.add_argument("--generator", help="advgan: the generator from train-advgan")
    goal = attack.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-speaker", dest="target_speaker", help="targeted: be accepted as this enrolled speaker")
    goal.add_argument("--target-file", dest="target_file", help="targeted: be accepted as this recording's speaker")
    goal.add_argument("--speaker", help="untargeted: be rejected from this enrolled speaker (the recording's own)")
    goal.add_argument("--reference-file", dest="reference_file", help="untargeted: be rejected from this recording's speaker")
    attack.add_argument("--snr", type=SNR_DB, default=30.0, help="perturbation at least this many dB below the signal (default 30)")
    attack.add_argument(
        "--epsilon", type=number_in(0, 1, low_open=True), default=None, help="L-inf bound on the perturbation's amplitude (optional)"
    )
    attack.add_argument("--steps", type=whole_number(1, 100_000), default=50)
    attack.add_argument("--random-starts", dest="random_starts", type=whole_number(1, 1000), default=1)
    attack.add_argument("--seed", type=SEED, default=0)
    add_decision_arguments(attack, keras_only=True)
    attack.set_defaults(handler=cmd_attack)


def _add_phase_arguments(parser, phase: str, handler, audio_help: str) -> None:
    """A training phase of the one driver: its recipe flags, --working-dir, --audio-dir and --run-name."""
    add_recipe_arguments(parser, phase, handler, working_dir=RUNS_BELOW)
    parser.add_argument("--audio-dir", required=True, help=audio_help)
    parser.add_argument("--run-name", default=phase, help=f"the run's folder under WORKING_DIR (default {phase})")


def _train_advgan_parser(commands) -> None:
    advgan = commands.add_parser(
        "train-advgan", help="AdvGAN: train a perturbation generator against the verifier (then attack --method advgan)"
    )
    _add_phase_arguments(
        advgan, "advgan", cmd_train_advgan, "recordings of training speakers (sources and targets; never evaluation speakers)"
    )
    add_encoder_arguments(advgan, keras_only=True)


def _train_again_parser(commands) -> None:
    again = commands.add_parser("train-again", help="train an AGAIN-VC one-shot voice converter (then convert-voice --method again)")
    _add_phase_arguments(again, "again", cmd_train_again, "recordings of training speakers (never evaluation speakers)")


def _adversarial_finetune_parser(commands) -> None:
    robust = commands.add_parser("adversarial-finetune", help="PGD adversarial fine-tuning of a speaker model (a defence against attacks)")
    _add_phase_arguments(robust, "adversarial", cmd_adversarial_finetune, "recordings of its training speakers")
    robust.add_argument("--checkpoint-file", required=True, help="the speaker model (.keras) to make robust")


def _make_spoofs_parser(commands) -> None:
    spoofs = commands.add_parser(
        "make-spoofs", help="a spoof corpus (attacked and converted versions of a corpus's recordings) for the detector"
    )
    spoofs.add_argument("--audio-dir", required=True, help="genuine recordings (training speakers)")
    spoofs.add_argument("--out", required=True, help="folder for the spoofs and manifest.csv")
    spoofs.add_argument(
        "--families", default="fgsm,bim,pgd,world", help="comma-separated: fgsm, bim, pgd, nes, world, again (needs --converter)"
    )
    spoofs.add_argument("--converter", help="the AGAIN-VC converter (train-again) for the again family")
    spoofs.add_argument("--per-family", type=COUNT, default=100)
    spoofs.add_argument("--seed", type=SEED, default=0)
    add_quiet_argument(spoofs)
    add_decision_arguments(spoofs, keras_only=True)
    spoofs.set_defaults(handler=cmd_make_spoofs)


def _detect_parser(commands) -> None:
    detect = commands.add_parser("detect", help="spoof detector score and decision for recordings")
    detect.add_argument("files", nargs="+")
    detect.add_argument("--detector", required=True, help="a train-detector best.keras")
    detect.add_argument("--threshold", type=number_in(-1e6, 1e6), help="override the detector's threshold")
    detect.set_defaults(handler=cmd_detect)


def _convert_voice_parser(commands) -> None:
    convert = commands.add_parser("convert-voice", help="voice-conversion spoof: SOURCE's words in TARGET's voice statistics")
    convert.add_argument("source")
    convert.add_argument("target")
    convert.add_argument("out")
    convert.add_argument(
        "--method",
        choices=tuple(CONVERSION_METHODS),
        default="world",
        help="; ".join(f"{method}: {what}" for method, what in CONVERSION_METHODS.items()),
    )
    convert.add_argument("--converter", help="--method again: the converter (.keras) made by train-again")
    convert.set_defaults(handler=cmd_convert_voice)
