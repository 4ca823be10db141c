"""Command line: parse arguments, call the library, print. `python cli.py -h` lists the subcommands.

Heavy imports (TensorFlow) happen inside the subcommands that need a model, so `build-mfcc` starts fast.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .audio import TRIM_METHODS  # noqa: E402
from .diarization.pipeline import CLUSTERINGS, MAX_SPEAKERS, DiarizationConfig  # noqa: E402
from .errors import ConfigError, DeepSpeakerError  # noqa: E402
from .evaluation import ON_REFUSED  # noqa: E402
from .exported import RUNTIMES  # noqa: E402
from .features import ENERGY_SCALES, NORMALISATIONS  # noqa: E402
from .scoring.backends import SCORERS  # noqa: E402
from .vad import VAD_METHODS  # noqa: E402


def _feature_config(args):
    """The FeatureConfig of build-mfcc / build-shards flags (`_add_feature_arguments`)."""
    from .features import FeatureConfig

    return FeatureConfig(trim=args.trim or "reference", energies=args.energies, normalisation=args.normalisation)


def cmd_build_mfcc(args) -> int:
    from .data.cache import build_feature_cache

    summary = build_feature_cache(args.audio_dir, args.working_dir, _feature_config(args), workers=args.workers)
    print(summary)
    print(f"manifest: {os.path.join(args.working_dir, 'manifest.csv')}")
    return 0


def cmd_build_shards(args) -> int:
    from .tf.shards import INDEX, SHARDS_DIR, build_shards, parse_part

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


def cmd_download_checkpoint(args) -> int:
    from .download import download_checkpoint

    path = download_checkpoint(args.name, args.output_dir, args.url, progress=not args.quiet)
    print(f"{path} (SHA-256 verified); use it as --checkpoint_file, or `convert-checkpoint {path} model.keras`")
    return 0


def cmd_convert_checkpoint(args) -> int:
    from .checkpoints import check_save_path, save_model
    from .model_files import load_model

    check_save_path(args.target)
    model = load_model(args.source)
    save_model(model, args.target)
    print(f"wrote {args.target} ({model.count_params():,} weights)")
    return 0


def cmd_import_model(args) -> int:
    from .checkpoints import check_save_path, save_model
    from .importers import IMPORTERS

    check_save_path(args.target)
    model = IMPORTERS[args.kind](args.source)
    save_model(model, args.target)
    print(f"wrote {args.target}: {args.kind} model from {args.source} ({model.count_params():,} weights)")
    return 0


def cmd_export(args) -> int:
    from .model_files import load_model
    from .score_fusion import FUSION_SUFFIX
    from .tf.export import export_model

    if str(args.model).endswith(FUSION_SUFFIX):
        raise DeepSpeakerError(f"{args.model}: a score fusion runs several models, each with its own trimming; export each member model")
    quantisation = "float16" if args.float16 else "int8" if args.int8 else None
    metadata = export_model(load_model(args.model), args.target, args.format, quantisation, force=args.force, source=args.model)
    print(
        f"wrote {args.target}: {args.format}{f' ({quantisation})' if quantisation else ''}, waveform (batch, samples) at "
        f"{metadata.feature_config.sample_rate} Hz -> embedding ({metadata.embedding_dim}); trim before it: {metadata.feature_config.trim}"
    )
    print(f"parity with Keras on probe waveforms: max |difference| {metadata.max_abs_difference:.2e}, min cosine {metadata.min_cosine:.6f}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from .assembly import load_diarizer
    from .service import ServiceLimits, SpeakerService, create_app

    keys = list(args.api_key or []) + [k for k in os.environ.get("DEEP_SPEAKER_API_KEYS", "").split(",") if k]
    given = {"max_seconds": args.max_seconds, "max_diarize_seconds": args.max_diarize_seconds, "max_concurrent": args.max_concurrent}
    limits = ServiceLimits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), **{name: value for name, value in given.items() if value is not None}
    )
    verifier = _verifier(args)  # the encoder, scorer and spoof gate (--detect-spoof) as every command builds them
    encoder = verifier.encoder
    diarizer = load_diarizer(encoder=encoder)  # the verifier's models, loaded once
    service = SpeakerService(
        encoder,
        args.store,
        keys,
        limits,
        operating_point=args.operating_point,
        scorer=verifier.scorer,
        spoof_gate=verifier.spoof_gate,
        diarizer=diarizer,
    )
    print(
        f"serving model {encoder.fingerprint} on http://{args.host}:{args.port}/ (store {args.store}; writing {'enabled' if keys else 'disabled: no API key'})"
    )
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0


def _attack_threshold(verifier) -> tuple[float, str]:
    """The threshold an attack aims past, and how it was chosen; an error when the model has none."""
    threshold, source = verifier.threshold()
    if threshold is None:
        raise DeepSpeakerError(f"no threshold to attack: {source}", cli_hint="calibrate the model or pass --threshold")
    return threshold, source


def cmd_attack(args) -> int:
    from .adversarial import AttackConfig
    from .assembly import attack
    from .audio import check_audio_target, write_audio

    check_audio_target(args.out)
    targeted = args.target_speaker is not None or args.target_file is not None
    verifier = _verifier(args)
    threshold, source = _attack_threshold(verifier)
    name = args.target_speaker if targeted else args.speaker
    if name is not None:
        with _registry(args, verifier.encoder) as registry:
            reference = registry.embedding(name)
    else:
        reference = verifier.encoder.embed(args.target_file if targeted else args.reference_file)
    config = AttackConfig(args.method, args.snr, args.epsilon, args.steps, random_starts=args.random_starts, seed=args.seed)
    generator = None
    if args.method == "advgan":
        from .models.advgan import load_generator

        if not args.generator:
            raise DeepSpeakerError("--method advgan needs --generator G.keras (made by train-advgan)")
        generator = load_generator(args.generator)
    clean, result = attack(verifier.encoder, args.audio, reference, threshold, targeted, config, generator, progress=sys.stderr.isatty())
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


def _run_dir(args) -> str:
    """Where a long job's checkpoints go: --run_dir, or OUT without its suffix + _run."""
    return args.run_dir or str(Path(args.out).with_suffix("")) + "_run"


def _add_loop_arguments(parser, audio_help: str, out_help: str, steps: int, batch_size: int) -> None:
    """The options every custom training loop takes (train-advgan, train-again, adversarial-finetune)."""
    parser.add_argument("--audio_dir", required=True, help=audio_help)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--run_dir", help="checkpoints for resuming (default: OUT without suffix + _run)")
    parser.add_argument("--steps", type=COUNT, default=steps)
    parser.add_argument("--batch_size", type=COUNT, default=batch_size)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_train_advgan(args) -> int:
    from .tf.advgan import train_advgan

    out = train_advgan(
        _encoder(args),
        args.audio_dir,
        args.out,
        _run_dir(args),
        args.steps,
        args.batch_size,
        args.snr,
        per_speaker=args.per_speaker,
        gan_weight=args.gan_weight,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"generator: {out} (perturbations at {args.snr} dB SNR; `attack IN OUT --method advgan --generator {out} --target-file T`)")
    return 0


def cmd_adversarial_finetune(args) -> int:
    from .tf.adversarial_training import adversarial_finetune

    out = adversarial_finetune(
        args.checkpoint_file,
        args.audio_dir,
        args.out,
        _run_dir(args),
        args.steps,
        args.batch_size,
        snr_db=args.snr,
        pgd_steps=args.pgd_steps,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"fine-tuned model: {out} (a new fingerprint: calibrate it before use)")
    return 0


def cmd_make_spoofs(args) -> int:
    from .adversarial.spoofs import build_spoof_corpus
    from .assembly import attack
    from .data.corpus import discover_utterances

    verifier = _verifier(args)
    threshold, _ = _attack_threshold(verifier)
    recordings = [(u.path, u.speaker) for u in discover_utterances(args.audio_dir)]
    families = [f for f in args.families.split(",") if f]
    converter = None
    if args.converter:
        from .models.again_vc import load_converter

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
    from .adversarial.detector import SpoofDetector

    detector = SpoofDetector(args.detector, args.threshold)
    for path in args.files:
        score = detector.score(path)
        print(f"{path}\tscore {score:+.3f}\t{'spoof' if score >= detector.threshold else 'genuine'} (threshold {detector.threshold:+.3f})")
    return 0


def cmd_convert_voice(args) -> int:
    from .adversarial.conversion import again_convert, world_convert
    from .audio import check_audio_target, read_audio, write_audio

    check_audio_target(args.out)
    if args.method == "again":
        from .models.again_vc import load_converter

        if not args.converter:
            raise ConfigError("--method again needs --converter (a model trained by `train-again`)")
        converted = again_convert(load_converter(args.converter), read_audio(args.source), read_audio(args.target))
    else:
        converted = world_convert(read_audio(args.source), read_audio(args.target))
    write_audio(args.out, converted)
    print(f"wrote {args.out}: {args.source} in the voice of {args.target} ({args.method})")
    return 0


def cmd_train_again(args) -> int:
    from .tf.again_vc import train_again

    out = train_again(
        args.audio_dir,
        args.out,
        _run_dir(args),
        args.steps,
        args.batch_size,
        channels=args.channels,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"converter: {out} (`convert-voice SOURCE TARGET OUT --method again --converter {out}`)")
    return 0


def cmd_diarize(args) -> int:
    from .audio import MAX_STREAM_SECONDS, require_readable
    from .diarization import write_rttm
    from .diarization.output import plot_timeline, write_json

    config = DiarizationConfig(
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
    require_readable(args.audio, MAX_STREAM_SECONDS)  # before the model
    from .assembly import load_diarizer

    segments = load_diarizer(_checkpoint(args), config, args.overlap_detector).diarize(args.audio, progress=not args.quiet)
    for segment in segments:
        print(f"{segment.start:8.2f} {segment.end:8.2f}  {segment.speaker}")
    print(f"{len({s.speaker for s in segments})} speaker(s), {len(segments)} turn(s)")
    for path, write in ((args.rttm, write_rttm), (args.json, write_json), (args.plot, plot_timeline)):
        if path:
            write(path, segments)
    return 0


def cmd_score_diarization(args) -> int:
    import json

    from .diarization import DiarizationError, read_rttm, read_uem, score_recordings
    from .fileio import atomic_write_bytes

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


def cmd_fuse(args) -> int:
    from .assembly import fuse
    from .data.corpus import discover_utterances

    recordings = discover_utterances(args.audio_dir)
    target = fuse(
        args.models, [r.path for r in recordings], [r.speaker for r in recordings], args.target, args.weights, progress=not args.quiet
    )
    print(
        f"wrote {target}: score fusion of {len(args.models)} models (impostor spreads from {len(recordings)} recordings in {args.audio_dir})"
    )
    return 0


def cmd_ensemble(args) -> int:
    from .checkpoints import check_save_path, save_model
    from .model_files import load_model
    from .models.ensemble import build_ensemble

    check_save_path(args.target)
    model = build_ensemble([load_model(path) for path in args.models], args.weights)
    save_model(model, args.target)
    print(
        f"wrote {args.target}: {len(args.models)} models fused by score weights {model.get_layer('backbone').get_layer('score_fusion').fusion_weights} ({model.count_params():,} weights)"
    )
    return 0


def _checkpoint(args):
    from .score_fusion import DEFAULT_SYSTEM

    return args.checkpoint_file or DEFAULT_SYSTEM


def _encoder(args):
    from .assembly import load_encoder

    return load_encoder(
        _checkpoint(args),
        crop_frames=args.crop_frames,
        trim=args.trim,
        bfloat16=args.bfloat16,
        runtime=args.runtime,
    )


def _require_inputs(paths) -> None:
    """Each input recording exists and has a readable audio header: checked before any model loads."""
    from .audio import require_readable

    for path in paths:
        require_readable(path)


def _registry(args, encoder=None, create: bool = False):
    """The enrolment store; only `enroll` creates one (a missing store is an error, found before the model loads)."""
    from .enrol import SpeakerRegistry, require_store

    if not create:
        require_store(args.store)
    return SpeakerRegistry(args.store, encoder or _encoder(args), create=create)


def _scorer(args, encoder):
    from .scoring import load_scorer

    return load_scorer(args.scorer, encoder.fingerprint)


def _verifier(args, encoder=None):
    from .assembly import build_verifier

    encoder = encoder or _encoder(args)
    return build_verifier(encoder, _scorer(args, encoder), args.operating_point, args.threshold, getattr(args, "detect_spoof", None))


def cmd_embed(args) -> int:
    from .fileio import atomic_save_npy

    out = Path(args.out)
    if out.is_dir() or out.suffix != ".npy":
        raise DeepSpeakerError(f"{out}: --out names the .npy file to write (not a folder)")
    _require_inputs(args.files)
    embeddings = _encoder(args).embed_many(args.files, progress=len(args.files) > 1)
    atomic_save_npy(args.out, embeddings)
    print(f"wrote {args.out}: {embeddings.shape[0]} embeddings of dimension {embeddings.shape[1]}")
    return 0


def cmd_verify(args) -> int:
    if (args.audio_b is None) == (args.speaker is None):
        raise DeepSpeakerError("verify takes two recordings (verify A B) or one and an enrolled name (verify A --speaker NAME)")
    if args.speaker is not None:
        from .enrol import require_store

        require_store(args.store)  # before the model
    _require_inputs([args.audio_a] + ([args.audio_b] if args.audio_b is not None else []))
    verifier = _verifier(args)
    if args.speaker is not None:
        with _registry(args, verifier.encoder) as registry:
            decision = verifier.verify_enrolled(args.audio_a, args.speaker, registry)
    else:
        decision = verifier.verify(args.audio_a, args.audio_b)
    print(decision)
    return 0


def cmd_calibrate(args) -> int:
    from .scoring.calibration import Calibration, require_uncalibrated, save_calibration

    if (args.trials is None or args.audio_root is None) == (args.windows is None or args.audio_dir is None):
        raise ConfigError(
            "calibrate takes a trial list (--trials T --audio_root R) or windows of training speakers (--windows SECONDS --audio_dir DIR)"
        )
    if args.windows is not None:
        return _calibrate_windows(args)
    encoder = _encoder(args)
    if not args.force:
        require_uncalibrated(encoder.fingerprint, _checkpoint(args), args.scorer)
    from .evaluation import evaluate_trials

    result = evaluate_trials(encoder, args.trials, args.audio_root, scorer=_scorer(args, encoder))
    calibration = Calibration.from_scores(
        result.target_scores, result.nontarget_scores, trials=str(args.trials), model=encoder.fingerprint, scorer=args.scorer
    )
    paths = save_calibration(calibration, _checkpoint(args), force=args.force)
    print(result)
    print(
        f"thresholds: eer {calibration.eer:.4f}, far1 {calibration.far1:.4f}, far0.1 {calibration.far0_1:.4f} -> {', '.join(map(str, paths))}"
    )
    print(f"calibrated log-likelihood ratio = {calibration.llr_scale:.3f} x score {calibration.llr_offset:+.3f}")
    return 0


def _calibrate_windows(args) -> int:
    """calibrate --windows: the thresholds diarization clusters windows of that length with."""
    from .assembly import load_diarizer
    from .data.corpus import discover_utterances
    from .diarization.pipeline import calibrate_windows
    from .scoring.calibration import require_uncalibrated, save_calibration

    if args.scorer != "cosine":
        raise ConfigError("diarization compares windows by cosine: calibrate --windows takes no --scorer")
    recordings = discover_utterances(args.audio_dir)
    # windows only: exclusive, so no overlap detector is loaded
    diarizer = load_diarizer(
        args.checkpoint_file, DiarizationConfig(window=args.windows, hop=args.windows / 2, vad=args.vad, exclusive=True)
    )
    if not args.force:
        require_uncalibrated(diarizer.encoder.fingerprint, _checkpoint(args), seconds=args.windows)
    calibration = calibrate_windows(
        diarizer, [r.path for r in recordings], [r.speaker for r in recordings], progress=not args.quiet, source=str(args.audio_dir)
    )
    paths = save_calibration(calibration, _checkpoint(args), force=args.force)
    print(f"{calibration.trials}: EER {calibration.eer_percent:.2f} %")
    print(
        f"thresholds for {args.windows:g} s windows: eer {calibration.eer:.4f}, far1 {calibration.far1:.4f}, far0.1 {calibration.far0_1:.4f} -> {', '.join(map(str, paths))}"
    )
    print("EER threshold by recording SNR: " + ", ".join(f"{snr:g} dB {threshold:.4f}" for snr, threshold in calibration.snr_thresholds))
    return 0


def cmd_enroll(args) -> int:
    _require_inputs(args.files)
    with _registry(args, create=True) as registry:
        registry.enroll(args.name, args.files, replace=args.replace)
    print(f"enrolled {args.name!r} from {len(args.files)} file(s) in {args.store}")
    return 0


def _store_alone(args):
    """The store for listing and removing names: checked against the model when one is named (`--checkpoint_file`),
    else opened as it is, with no model loaded (a second, not TensorFlow's start-up)."""
    from .enrol import SpeakerRegistry

    return SpeakerRegistry(args.store, _encoder(args) if args.checkpoint_file else None, create=False)


def cmd_list(args) -> int:
    with _store_alone(args) as registry:
        names = registry.names()
    for name, files in names:
        print(f"{name}\t{files} file(s)")
    if not names:
        print(f"{args.store}: no speaker enrolled")
    return 0


def cmd_remove(args) -> int:
    with _store_alone(args) as registry:
        registry.remove(args.name)
    print(f"removed {args.name!r} from {args.store}")
    return 0


def cmd_identify(args) -> int:
    from .enrol import require_store
    from .verification import check_top_k

    check_top_k(args.top_k)  # the options and the store before the model
    require_store(args.store)
    _require_inputs([args.audio])
    verifier = _verifier(args)
    with _registry(args, verifier.encoder) as registry:
        print(verifier.identify(args.audio, registry, args.top_k))
    return 0


def cmd_train(args) -> int:
    from .config import flat_options, load_recipe
    from .tf import train

    overrides = {name: getattr(args, name) for name in flat_options(args.phase)}
    recipe = load_recipe(args.phase, args.recipe, **overrides)
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
        from .assembly import load_teacher

        extra.update(run_name=args.run_name, teacher=load_teacher(recipe))
    best = train.PHASES[args.phase](args.working_dir, recipe, progress=not args.quiet, **extra)
    print(f"best {args.phase} checkpoint: {best}")
    return 0


def cmd_test_model(args) -> int:
    from .data.split import SpeakerFeatures
    from .evaluation import closed_set_metrics
    from .model_files import check_features

    data = SpeakerFeatures(args.working_dir)
    encoder = _encoder(args)
    if getattr(encoder, "speaker_model", None) is None:
        raise DeepSpeakerError(
            f"{_checkpoint(args)}: test-model runs one Keras model on cached features (not a score fusion or an exported model)"
        )
    check_features(encoder.speaker_model, data.feature_config, _checkpoint(args))
    embeddings = encoder.embed_features([data.features[i] for i in data.validation])
    print(closed_set_metrics(embeddings, data.labels[data.validation], seed=args.seed))
    return 0


def cmd_eval_trials(args) -> int:
    from .evaluation import evaluate_trials, save_result, write_scores

    encoder = _encoder(args)
    result = evaluate_trials(encoder, args.trials, args.audio_root, scorer=_scorer(args, encoder), on_refused=args.on_refused)
    for name, reason in list(result.refused.items())[:10]:
        print(f"warning: refused {name}: {reason}", file=sys.stderr)
    if result.refused:
        more = f" (and {len(result.refused) - 10} more, listed in --json)" if len(result.refused) > 10 else ""
        print(
            f"warning: {len(result.refused)} recording(s) refused{more}; their {result.refused_trials} trials are excluded", file=sys.stderr
        )
    save_result(
        result, args.json, args.plot, extra={"checkpoint": str(_checkpoint(args)), "trials": str(args.trials), "scorer": args.scorer}
    )
    if args.scores:
        write_scores(args.scores, args.trials, result)
    print(result)
    return 0


def cmd_augment_cache(args) -> int:
    from .data.augment import SPEEDS, WaveformAugmentation
    from .data.copies import build_augmented_copies

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
    )
    print(f"{computed} augmented copies computed in {args.working_dir}/augmented (train with --cached_copies true)")
    return 0


def cmd_fit_backend(args) -> int:
    from .evaluation import fit_backend
    from .scoring import save_scorer

    encoder = _encoder(args)
    scorer = fit_backend(encoder, args.audio_dir, args.scorer)
    if not scorer.needs_fit:
        print(f"the {args.scorer} back end needs no fitting")
        return 0
    print(f"fitted {args.scorer} for model {encoder.fingerprint} -> {save_scorer(scorer, encoder.fingerprint, args.save_to)}")
    return 0


def _add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature recipe of a cache or shards (the trim comes from the global --trim)."""
    parser.add_argument("--energies", choices=ENERGY_SCALES, default="linear", help="filterbank energies: linear (the reference's) or log")
    parser.add_argument(
        "--normalisation", choices=NORMALISATIONS, default="frame", help="standardise each frame (the reference) or the whole utterance"
    )


def _add_recipe_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    """One flag per recipe option of the phase (default None = keep the recipe's value)."""
    from .config import flat_options

    parser.add_argument(
        "--working_dir",
        required=True,
        help="feature cache from build-mfcc (or shards from build-shards with --input shards); runs are written below it",
    )
    parser.add_argument("--recipe", help="YAML recipe (nested by group or flat)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, (group, _, value_type, default) in flat_options(phase).items():
        parser.add_argument(
            f"--{name}", type=_parse_bool if value_type is bool else value_type, default=None, help=f"{group}; default {default}"
        )
    parser.set_defaults(handler=cmd_train, phase=phase)


def _parse_bool(text: str) -> bool:
    """true/false, yes/no, 1/0 (plain `bool` would take any non-empty text, 'false' too, as True)."""
    choices = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return choices[text.lower()]


def _whole(minimum: int, maximum: int | None = None):
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


def _number(low: float, high: float, low_open: bool = False):
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


SEED = _whole(0, 2**32 - 1)
COUNT = _whole(1)
WEIGHT = _number(0, 1e6, low_open=True)
COSINE = _number(-1, 1)
PROBABILITY = _number(0, 1)
SNR_DB = _number(0, 120)


def _add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint_file",
        help="model: Keras 2 .h5 (reference), Keras 3 .keras, a score fusion NAME.fusion.json, or an export (.onnx, .tflite, SavedModel folder) (default: the shipped default system)",
    )
    parser.add_argument("--crop_frames", type=int, default=None, help="reference-style crop of N frames (default: whole utterance)")
    parser.add_argument("--bfloat16", action="store_true", help="compute in bfloat16 (faster on CPUs with AVX512_BF16)")
    parser.add_argument(
        "--runtime", choices=RUNTIMES, default=RUNTIMES[0], help="onnx: the model exported once (cached) and run by ONNX Runtime"
    )


def _add_scorer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scorer", choices=sorted(SCORERS), default="cosine", help="score back end (all but cosine need `fit-backend` first)"
    )


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="speakers.db", help="SQLite enrolment store (default: ./speakers.db)")
    _add_encoder_arguments(parser)


def _add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    from .scoring.calibration import OPERATING_POINTS

    parser.add_argument(
        "--operating-point",
        "--operating_point",
        dest="operating_point",
        choices=OPERATING_POINTS,
        default="far1",
        help="calibrated threshold: false accepts = misses (eer), or 1 %% / 0.1 %% false accepts (default far1)",
    )
    parser.add_argument("--threshold", type=float, default=None, help="explicit score threshold (overrides the operating point)")
    parser.add_argument(
        "--detect-spoof",
        "--detect_spoof",
        dest="detect_spoof",
        help="a spoof detector (train-detector): recordings it flags are rejected with the reason",
    )
    _add_store_arguments(parser)
    _add_scorer_argument(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deep-speaker", description="Deep Speaker speaker recognition toolkit")
    parser.add_argument(
        "--trim", choices=TRIM_METHODS, default=None, help="silence removal before features (default: the model's, else 'reference')"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-mfcc", aliases=["build-mfcc-cache"], help="cache features of a corpus")
    build.add_argument("--audio_dir", required=True, help="speaker folders, Kaldi data dir / wav.scp, or path,speaker CSV")
    build.add_argument("--working_dir", required=True)
    build.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    _add_feature_arguments(build)
    build.set_defaults(handler=cmd_build_mfcc)

    shards = commands.add_parser(
        "build-shards", help="TFRecord feature shards for streamed training at scale (split across machines with --shard i/n)"
    )
    shards.add_argument("--audio_dir", required=True, help="speaker folders, Kaldi data dir / wav.scp, or path,speaker CSV")
    shards.add_argument("--working_dir", required=True, help="shards go to WORKING_DIR/shards (shared by all machines)")
    shards.add_argument("--shard", default="0/1", help="this machine's part i/n of the speakers (0-based; default 0/1: all)")
    shards.add_argument("--utterances_per_file", type=COUNT, default=500)
    shards.add_argument(
        "--validation_fraction",
        type=_number(0, 0.9, low_open=True),
        default=0.2,
        help="each speaker's last utterances held out for validation",
    )
    shards.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    _add_feature_arguments(shards)
    shards.add_argument("--quiet", action="store_true", help="no progress bar")
    shards.set_defaults(handler=cmd_build_shards)

    copies = commands.add_parser("augment-cache", help="augmented copies of every cached utterance (speed, rooms, noise, channels)")
    copies.add_argument("--working_dir", required=True, help="a feature cache from build-mfcc")
    copies.add_argument("--copies", type=COUNT, default=4)
    copies.add_argument("--speed_perturbation", action="store_true", help="copies cycle through speeds 1.0, 0.9, 1.1 (new classes)")
    copies.add_argument("--noise_dir", help="noise recordings (default: babble and coloured noise)")
    copies.add_argument("--rir_dir", help="room impulse responses (default: simulated rooms)")
    for name in ("noise_probability", "reverb_probability", "channel_probability"):
        copies.add_argument(f"--{name}", type=PROBABILITY, default=None, help="default: the augmentation's (deep_speaker/data/augment.py)")
    copies.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    copies.set_defaults(handler=cmd_augment_cache)

    download = commands.add_parser("download-checkpoint", help="the reference's published checkpoints, resumable, SHA-256 verified")
    download.add_argument(
        "name", choices=("triplet", "softmax"), help="triplet: softmax + triplet, 2,484 LibriSpeech speakers; softmax: 921 speakers"
    )
    download.add_argument("--output_dir", default=".", help="folder for the .h5 (default: here)")
    download.add_argument("--url", help="a mirror of the same file (default: the authors' Google Drive link)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(handler=cmd_download_checkpoint)

    convert = commands.add_parser("convert-checkpoint", help="legacy Keras 2 .h5 -> native .keras")
    convert.add_argument("source")
    convert.add_argument("target")
    convert.set_defaults(handler=cmd_convert_checkpoint)

    imported = commands.add_parser(
        "import-model", help="a pretrained model of another toolkit (PyTorch checkpoint, read without torch) -> .keras"
    )
    imported.add_argument(
        "kind",
        choices=["resemblyzer", "speechbrain"],
        help="resemblyzer: the GE2E encoder's pretrained.pt; speechbrain: an ECAPA-TDNN or x-vector embedding_model.ckpt",
    )
    imported.add_argument("source")
    imported.add_argument("target")
    imported.set_defaults(handler=cmd_import_model)

    export = commands.add_parser("export", help="waveform-in ONNX / TFLite / SavedModel of a model, front end included, parity-checked")
    export.add_argument("model", help="a .keras or Keras 2 .h5 speaker model")
    export.add_argument("target", help="NAME.onnx, NAME.tflite, or a SavedModel folder")
    export.add_argument("--format", choices=["onnx", "tflite", "savedmodel"], required=True)
    precision = export.add_mutually_exclusive_group()
    precision.add_argument("--float16", action="store_true", help="TFLite: float16 weights")
    precision.add_argument("--int8", action="store_true", help="ONNX or TFLite: int8 weights (dynamic range)")
    export.add_argument("--force", action="store_true", help="replace an existing export")
    export.set_defaults(handler=cmd_export)

    serve = commands.add_parser("serve", help="HTTP service and web page: embed, verify, enrol, identify, list, remove, diarize")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_whole(0, 65535), default=8000)
    serve.add_argument(
        "--api-key",
        "--api_key",
        dest="api_key",
        action="append",
        help="a key for enrolling and removing (repeatable; also DEEP_SPEAKER_API_KEYS=k1,k2)",
    )
    serve.add_argument(
        "--max-upload-mb",
        "--max_upload_mb",
        dest="max_upload_mb",
        type=_number(0, 4096, low_open=True),
        default=20.0,
        help="largest request body (default 20 MB)",
    )
    serve.add_argument(
        "--max-seconds",
        "--max_seconds",
        dest="max_seconds",
        type=_number(0, 86400, low_open=True),
        default=120.0,
        help="longest recording (default 120 s)",
    )
    serve.add_argument(
        "--max-diarize-seconds",
        "--max_diarize_seconds",
        dest="max_diarize_seconds",
        type=_number(0, 86400, low_open=True),
        help="longest recording to diarize (default: ServiceLimits.max_diarize_seconds, 10 minutes)",
    )
    serve.add_argument(
        "--max-concurrent",
        "--max_concurrent",
        dest="max_concurrent",
        type=_whole(1, 64),
        default=2,
        help="requests running the model at once (default 2)",
    )
    _add_decision_arguments(serve)
    serve.set_defaults(handler=cmd_serve)

    attack = commands.add_parser(
        "attack", help="adversarial example: make a recording accepted as a target speaker (or rejected from its own)"
    )
    attack.add_argument("audio")
    attack.add_argument("out", help="the attacked recording (16-bit WAV/FLAC)")
    attack.add_argument("--method", choices=["fgsm", "bim", "pgd", "nes", "advgan"], default="pgd")
    attack.add_argument("--generator", help="advgan: the generator from train-advgan")
    goal = attack.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-speaker", "--target_speaker", dest="target_speaker", help="targeted: be accepted as this enrolled speaker")
    goal.add_argument("--target-file", "--target_file", dest="target_file", help="targeted: be accepted as this recording's speaker")
    goal.add_argument("--speaker", help="untargeted: be rejected from this enrolled speaker (the recording's own)")
    goal.add_argument(
        "--reference-file", "--reference_file", dest="reference_file", help="untargeted: be rejected from this recording's speaker"
    )
    attack.add_argument("--snr", type=SNR_DB, default=30.0, help="perturbation at least this many dB below the signal (default 30)")
    attack.add_argument(
        "--epsilon", type=_number(0, 1, low_open=True), default=None, help="L-inf bound on the perturbation's amplitude (optional)"
    )
    attack.add_argument("--steps", type=_whole(1, 100_000), default=50)
    attack.add_argument("--random-starts", "--random_starts", dest="random_starts", type=_whole(1, 1000), default=1)
    attack.add_argument("--seed", type=SEED, default=0)
    _add_decision_arguments(attack)
    attack.set_defaults(handler=cmd_attack)

    advgan = commands.add_parser(
        "train-advgan", help="AdvGAN: train a perturbation generator against the verifier (then attack --method advgan)"
    )
    _add_loop_arguments(
        advgan, "recordings of training speakers (sources and targets; never evaluation speakers)", "the generator (.keras)", 300, 8
    )
    advgan.add_argument("--snr", type=SNR_DB, default=30.0, help="the perturbation's level below the signal, dB")
    advgan.add_argument("--per_speaker", type=COUNT, default=4, help="recordings of each speaker used")
    advgan.add_argument(
        "--gan_weight", type=_number(0, 1e6), default=0.01, help="weight of the discriminator's realism loss next to -score"
    )
    _add_encoder_arguments(advgan)
    advgan.set_defaults(handler=cmd_train_advgan)

    again = commands.add_parser("train-again", help="train an AGAIN-VC one-shot voice converter (then convert-voice --method again)")
    _add_loop_arguments(again, "recordings of training speakers (never evaluation speakers)", "the converter (.keras)", 5000, 32)
    again.add_argument("--channels", type=_whole(1, 4096), default=128, help="width of every block (the paper's 256 is 3x slower per step)")
    again.set_defaults(handler=cmd_train_again)

    robust = commands.add_parser("adversarial-finetune", help="PGD adversarial fine-tuning of a speaker model (a defence against attacks)")
    robust.add_argument("--checkpoint_file", required=True, help="the speaker model (.keras) to make robust")
    _add_loop_arguments(robust, "recordings of its training speakers", "the fine-tuned model (.keras)", 150, 16)
    robust.add_argument("--snr", type=SNR_DB, default=30.0, help="the attacker's budget during training, dB below the signal")
    robust.add_argument("--pgd_steps", type=_whole(1, 1000), default=3)
    robust.set_defaults(handler=cmd_adversarial_finetune)

    spoofs = commands.add_parser(
        "make-spoofs", help="a spoof corpus (attacked and converted versions of a corpus's recordings) for the detector"
    )
    spoofs.add_argument("--audio_dir", required=True, help="genuine recordings (training speakers)")
    spoofs.add_argument("--out", required=True, help="folder for the spoofs and manifest.csv")
    spoofs.add_argument(
        "--families", default="fgsm,bim,pgd,world", help="comma-separated: fgsm, bim, pgd, nes, world, again (needs --converter)"
    )
    spoofs.add_argument("--converter", help="the AGAIN-VC converter (train-again) for the again family")
    spoofs.add_argument("--per_family", type=COUNT, default=100)
    spoofs.add_argument("--seed", type=SEED, default=0)
    spoofs.add_argument("--quiet", action="store_true")
    _add_decision_arguments(spoofs)
    spoofs.set_defaults(handler=cmd_make_spoofs)

    detector = commands.add_parser("train-detector", help="train the spoof and adversarial-example detector on a make-spoofs manifest")
    _add_recipe_arguments(detector, "detector")
    detector.add_argument("--manifest", required=True, help="manifest.csv of make-spoofs")
    detector.add_argument("--held_out", help="comma-separated families never seen in training (leave-one-family-out testing)")
    detector.add_argument("--run_name", help="the run's folder under WORKING_DIR (default detector)")

    overlap = commands.add_parser(
        "train-overlap", help="train diarization's overlapped-speech detector on synthetic conversations of a corpus's speakers"
    )
    _add_recipe_arguments(overlap, "overlap")
    overlap.add_argument("--audio_dir", required=True, help="training corpus: one subfolder of recordings per speaker")
    overlap.add_argument("--run_name", help="the run's folder under WORKING_DIR (default overlap)")

    detect = commands.add_parser("detect", help="spoof detector score and decision for recordings")
    detect.add_argument("files", nargs="+")
    detect.add_argument("--detector", required=True, help="a train-detector best.keras")
    detect.add_argument("--threshold", type=_number(-1e6, 1e6), help="override the detector's threshold")
    detect.set_defaults(handler=cmd_detect)

    convert = commands.add_parser("convert-voice", help="voice-conversion spoof: SOURCE's words in TARGET's voice statistics")
    convert.add_argument("source")
    convert.add_argument("target")
    convert.add_argument("out")
    convert.add_argument(
        "--method",
        choices=["world", "again"],
        default="world",
        help="world: WORLD vocoder, F0 and mel-cepstrum statistics mapped to the target; again: an AGAIN-VC converter (--converter), Griffin-Lim vocoded",
    )
    convert.add_argument("--converter", help="--method again: the converter (.keras) made by train-again")
    convert.set_defaults(handler=cmd_convert_voice)

    ensemble = commands.add_parser("ensemble", help="fuse trained models with one front end into one model (weighted score fusion)")
    ensemble.add_argument("models", nargs="+", help="speaker models (.keras or legacy .h5), two or more")
    ensemble.add_argument("target", help="the fused model (.keras)")
    ensemble.add_argument("--weights", type=WEIGHT, nargs="+", help="score weights, one per model (default: equal)")
    ensemble.set_defaults(handler=cmd_ensemble)

    diarize = commands.add_parser("diarize", help="who spoke when: speaker turns of a recording (RTTM, JSON, timeline plot)")
    diarize.add_argument("audio")
    diarize.add_argument("--rttm", help="write the turns as RTTM")
    diarize.add_argument("--json", help="write the turns as JSON")
    diarize.add_argument("--plot", help="write a timeline PNG")
    diarize.add_argument(
        "--num-speakers", "--num_speakers", dest="num_speakers", type=_whole(1, MAX_SPEAKERS), help="the speaker count, if known"
    )
    speakers = _whole(1, MAX_SPEAKERS)
    diarize.add_argument("--min-speakers", "--min_speakers", dest="min_speakers", type=speakers, default=DiarizationConfig.min_speakers)
    diarize.add_argument("--max-speakers", "--max_speakers", dest="max_speakers", type=speakers, default=DiarizationConfig.max_speakers)
    diarize.add_argument(
        "--clustering",
        choices=CLUSTERINGS,
        default=DiarizationConfig.clustering,
        help="agglomerative (calibrated threshold) or spectral (eigengap)",
    )
    diarize.add_argument(
        "--threshold", type=COSINE, help="ahc: cosine score to join clusters (default: the model's calibrated EER threshold)"
    )
    diarize.add_argument("--window", type=_number(0.2, 30), default=DiarizationConfig.window, help="seconds per embedded window")
    diarize.add_argument("--hop", type=_number(0.05, 30), default=DiarizationConfig.hop, help="seconds between windows")
    diarize.add_argument(
        "--no-resegment", "--no_resegment", dest="resegment", action="store_false", help="skip the frame-level resegmentation"
    )
    diarize.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default=DiarizationConfig.vad,
        help="voice-activity detector (default %(default)s: see README, Diarization)",
    )
    diarize.add_argument(
        "--exclusive", action="store_true", help="one speaker at every instant (for ASR): overlapped speech is not given a second speaker"
    )
    diarize.add_argument(
        "--overlap-detector",
        "--overlap_detector",
        dest="overlap_detector",
        help="a train-overlap best.keras (default: the shipped overlap detector)",
    )
    diarize.add_argument(
        "--overlap-threshold",
        "--overlap_threshold",
        dest="overlap_threshold",
        type=_number(0.01, 0.99),
        default=DiarizationConfig.overlap_threshold,
        help="overlap probability from which speech gets a second speaker (default %(default)s)",
    )
    diarize.add_argument("--quiet", action="store_true", help="no progress bar")
    diarize.add_argument("--checkpoint_file", help="model or NAME.fusion.json (default: the shipped default system)")
    diarize.set_defaults(handler=cmd_diarize)

    scoring = commands.add_parser(
        "score-diarization",
        help="DER (missed, false alarm, confusion) and JER of RTTM turns against a reference, per recording and in total",
    )
    scoring.add_argument("reference", help="reference RTTM")
    scoring.add_argument("hypothesis", help="hypothesis RTTM (e.g. from diarize --rttm)")
    scoring.add_argument(
        "--collar",
        type=_number(0, 10),
        default=0.25,
        help="seconds either side of each reference boundary left unscored (md-eval's; default 0.25)",
    )
    scoring.add_argument(
        "--skip-overlap", "--skip_overlap", dest="skip_overlap", action="store_true", help="leave overlapped reference speech unscored"
    )
    scoring.add_argument("--uem", help="UEM file: score only its regions ('<recording> <channel> <start> <end>' per line)")
    scoring.add_argument("--json", help="write the numbers here")
    scoring.set_defaults(handler=cmd_score_diarization)

    fuse = commands.add_parser("fuse", help="score fusion of models with different front ends (e.g. GE2E + our own) -> NAME.fusion.json")
    fuse.add_argument("models", nargs="+", help="speaker models, two or more")
    fuse.add_argument("target", help="the fusion file (NAME.fusion.json); use it wherever a --checkpoint_file goes")
    fuse.add_argument(
        "--audio_dir",
        required=True,
        help="recordings of training speakers (not the evaluation speakers): each model's impostor-score spread",
    )
    fuse.add_argument("--weights", type=WEIGHT, nargs="+", help="one per model (default: equal)")
    fuse.add_argument("--quiet", action="store_true", help="no progress bar")
    fuse.set_defaults(handler=cmd_fuse)

    embed = commands.add_parser("embed", help="embed audio files into an .npy (n, dim)")
    embed.add_argument("files", nargs="+")
    embed.add_argument("--out", required=True)
    _add_encoder_arguments(embed)
    embed.set_defaults(handler=cmd_embed)

    verify = commands.add_parser("verify", help="same speaker? two recordings, or a recording and an enrolled name")
    verify.add_argument("audio_a")
    verify.add_argument("audio_b", nargs="?")
    verify.add_argument("--speaker", help="compare audio_a with this enrolled speaker")
    _add_decision_arguments(verify)
    verify.set_defaults(handler=cmd_verify)

    calibrate = commands.add_parser(
        "calibrate",
        help="thresholds (EER, FAR 1 %%, FAR 0.1 %%) from a trial list, or for diarization's windows from training speakers; saved beside the model",
    )
    calibrate.add_argument("--trials", help="a trial list ('label enroll test' per line)")
    calibrate.add_argument("--audio_root", help="the folder the trial paths are relative to")
    calibrate.add_argument(
        "--windows", type=_number(0.2, 30), help="instead: calibrate windows of this many seconds (diarization's --window) ..."
    )
    calibrate.add_argument("--audio_dir", help="... from recordings of training speakers (never the evaluation speakers)")
    calibrate.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default=DiarizationConfig.vad,
        help="... whose speech the detector diarize will use finds (--windows only)",
    )
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar")
    calibrate.add_argument(
        "--force", action="store_true", help="replace the model's existing calibration (its own or the shipped one; backed up)"
    )
    _add_encoder_arguments(calibrate)
    _add_scorer_argument(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    enroll = commands.add_parser("enroll", help="enrol a speaker from one or more recordings (embeddings averaged)")
    enroll.add_argument("name")
    enroll.add_argument("files", nargs="+")
    enroll.add_argument("--replace", action="store_true", help="overwrite an existing speaker of that name")
    _add_store_arguments(enroll)
    enroll.set_defaults(handler=cmd_enroll)

    listing = commands.add_parser("list", help="enrolled speakers")
    _add_store_arguments(listing)
    listing.set_defaults(handler=cmd_list)

    remove = commands.add_parser("remove", help="delete an enrolled speaker")
    remove.add_argument("name")
    _add_store_arguments(remove)
    remove.set_defaults(handler=cmd_remove)

    identify = commands.add_parser("identify", help="who is speaking? ranked enrolled speakers, 'unknown' below the threshold")
    identify.add_argument("audio")
    identify.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=5)
    _add_decision_arguments(identify)
    identify.set_defaults(handler=cmd_identify)

    softmax = commands.add_parser("train-softmax", help="classification training (softmax, AM- or AAM-softmax) on a feature cache")
    _add_recipe_arguments(softmax, "classification")
    softmax.add_argument(
        "--initial_checkpoint",
        help="fine-tune this speaker model (same backbone and features; margin classes start at class means) instead of training from scratch",
    )
    softmax.add_argument(
        "--run_name", help="the run's folder under WORKING_DIR (default softmax), e.g. softmax_lmf for large-margin fine-tuning"
    )

    triplet = commands.add_parser("train-triplet", help="hard-negative triplet training from the classification checkpoint")
    _add_recipe_arguments(triplet, "triplet")
    triplet.add_argument("--initial_checkpoint", help="default: WORKING_DIR/softmax/best.keras")

    head = commands.add_parser("train-head", help="train a dense or TDNN refinement head on a base checkpoint")
    _add_recipe_arguments(head, "head")
    head.add_argument("--checkpoint_file", required=True, help="base model (triplet or softmax checkpoint)")

    test = commands.add_parser("test-model", help="reference closed-set test on the held-out utterances of the training speakers")
    test.add_argument("--working_dir", required=True)
    test.add_argument("--seed", type=SEED, default=123)
    _add_encoder_arguments(test)
    test.set_defaults(handler=cmd_test_model)

    backend = commands.add_parser(
        "fit-backend",
        help="fit a score back end: centered, asnorm, plda on training speakers' recordings; snorm on unlabelled recordings of the domain you will score",
    )
    backend.add_argument(
        "--audio_dir",
        required=True,
        help="training speakers' corpus (never the evaluation speakers); for snorm any recordings of the target domain, no labels",
    )
    backend.add_argument("--save_to", help="folder to save it in (default: the user's back-end folder); deep_speaker/pretrained ships it")
    _add_encoder_arguments(backend)
    _add_scorer_argument(backend)
    backend.set_defaults(handler=cmd_fit_backend)

    trials = commands.add_parser("eval-trials", help="open-set verification: EER, minDCF, ROC/DET on a trial list")
    trials.add_argument("--trials", required=True, help="VoxCeleb format: 'label enroll test' per line")
    trials.add_argument("--audio_root", required=True, help="folder the trial paths are relative to")
    trials.add_argument("--json", help="write the numbers here")
    trials.add_argument("--plot", help="write ROC and DET curves to this PNG")
    trials.add_argument("--scores", help="write every trial's score here ('label enroll test score'; 'refused' where a recording was)")
    trials.add_argument(
        "--on-refused",
        "--on_refused",
        dest="on_refused",
        choices=ON_REFUSED,
        default="skip",
        help="a recording without usable speech: skip its trials (counted, named, a warning; default) or stop",
    )
    _add_encoder_arguments(trials)
    _add_scorer_argument(trials)
    trials.set_defaults(handler=cmd_eval_trials)
    return parser


OUTPUTS = ("out", "target", "rttm", "json", "plot", "scores")  # the arguments naming files a command writes


def refuse_output_over_input(args) -> None:
    """No command writes over one of its own inputs (an attack's OUT = IN would destroy the original recording)."""
    values = vars(args)
    inputs = [
        (name, item)
        for name, value in values.items()
        if name not in OUTPUTS
        for item in (value if isinstance(value, list) else [value])
        if isinstance(item, (str, Path))
    ]
    for output in (values.get(name) for name in OUTPUTS):
        if not isinstance(output, (str, Path)) or not os.path.exists(output):
            continue
        for name, value in inputs:
            if os.path.exists(value) and os.path.samefile(output, value):
                raise ConfigError(
                    f"{output}: is also this command's input ({name.replace('_', '-')}); writing there would destroy it: choose another output"
                )


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's import with the process's stderr (file descriptor 2) sent to /dev/null; Python errors still raise."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports TensorFlow, whenever a command first needs it, without the banner its C++ libraries print as they load
    (oneDNN, CPU features: written before any log level applies; TF_CPP_MIN_LOG_LEVEL does not reach it)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def main(argv=None) -> int:
    if "tensorflow" not in sys.modules and not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    args = build_parser().parse_args(argv)
    try:
        refuse_output_over_input(args)
        return args.handler(args)
    except DeepSpeakerError as error:
        hint = f" ({error.cli_hint})" if error.cli_hint else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder, a missing permission: the system's own words
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
