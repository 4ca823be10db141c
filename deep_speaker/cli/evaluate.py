"""Commands that measure and calibrate: trial lists, operating points, score back ends."""

from __future__ import annotations

import sys

from ..diarization.pipeline import DiarizationConfig
from ..errors import ConfigError
from ..evaluation import ON_REFUSED
from ..vad import VAD_METHODS
from .common import add_encoder_arguments, add_quiet_argument, add_scorer_argument, checkpoint_path, number_in, open_encoder, open_scorer


def cmd_calibrate(args) -> int:
    from ..scoring.calibration import Calibration, require_uncalibrated, save_calibration

    if (args.trials is None or args.audio_root is None) == (args.windows is None or args.audio_dir is None):
        raise ConfigError(
            "calibrate takes a trial list (--trials T --audio-root R) or windows of training speakers (--windows SECONDS --audio-dir DIR)"
        )
    if args.windows is not None:
        return _calibrate_windows(args)
    encoder = open_encoder(args)
    if not args.force:
        require_uncalibrated(encoder.fingerprint, checkpoint_path(args), args.scorer)
    from ..evaluation import evaluate_trials

    result = evaluate_trials(encoder, args.trials, args.audio_root, progress=not args.quiet, scorer=open_scorer(args, encoder))
    calibration = Calibration.from_scores(
        result.target_scores, result.nontarget_scores, trials=str(args.trials), model=encoder.fingerprint, scorer=args.scorer
    )
    paths = save_calibration(calibration, checkpoint_path(args), force=args.force)
    print(result)
    print(
        f"thresholds: eer {calibration.eer:.4f}, far1 {calibration.far1:.4f}, far0.1 {calibration.far0_1:.4f} -> {', '.join(map(str, paths))}"
    )
    print(f"calibrated log-likelihood ratio = {calibration.llr_scale:.3f} x score {calibration.llr_offset:+.3f}")
    return 0


def _calibrate_windows(args) -> int:
    """calibrate --windows: the thresholds diarization clusters windows of that length with."""
    from ..assembly import load_diarizer
    from ..data.corpus import discover_utterances
    from ..diarization.pipeline import calibrate_windows
    from ..scoring.calibration import require_uncalibrated, save_calibration

    if args.scorer != "cosine":
        raise ConfigError("diarization compares windows by cosine: calibrate --windows takes no --scorer")
    recordings = discover_utterances(args.audio_dir)
    # windows only: exclusive, so no overlap detector is loaded
    diarizer = load_diarizer(
        args.checkpoint_file, DiarizationConfig(window=args.windows, hop=args.windows / 2, vad=args.vad, exclusive=True)
    )
    if not args.force:
        require_uncalibrated(diarizer.encoder.fingerprint, checkpoint_path(args), seconds=args.windows)
    calibration = calibrate_windows(
        diarizer, [r.path for r in recordings], [r.speaker for r in recordings], progress=not args.quiet, source=str(args.audio_dir)
    )
    paths = save_calibration(calibration, checkpoint_path(args), force=args.force)
    print(f"{calibration.trials}: EER {calibration.eer_percent:.2f} %")
    print(
        f"thresholds for {args.windows:g} s windows: eer {calibration.eer:.4f}, far1 {calibration.far1:.4f}, far0.1 {calibration.far0_1:.4f} -> {', '.join(map(str, paths))}"
    )
    print("EER threshold by recording SNR: " + ", ".join(f"{snr:g} dB {threshold:.4f}" for snr, threshold in calibration.snr_thresholds))
    return 0


def cmd_eval_trials(args) -> int:
    from ..evaluation import evaluate_trials, save_result, write_scores

    encoder = open_encoder(args)
    result = evaluate_trials(
        encoder, args.trials, args.audio_root, progress=not args.quiet, scorer=open_scorer(args, encoder), on_refused=args.on_refused
    )
    for name, reason in list(result.refused.items())[:10]:
        print(f"warning: refused {name}: {reason}", file=sys.stderr)
    if result.refused:
        more = f" (and {len(result.refused) - 10} more, listed in --json)" if len(result.refused) > 10 else ""
        print(
            f"warning: {len(result.refused)} recording(s) refused{more}; their {result.refused_trials} trials are excluded", file=sys.stderr
        )
    save_result(
        result, args.json, args.plot, extra={"checkpoint": str(checkpoint_path(args)), "trials": str(args.trials), "scorer": args.scorer}
    )
    if args.scores:
        write_scores(args.scores, args.trials, result)
    print(result)
    return 0


def cmd_fit_backend(args) -> int:
    from ..evaluation import fit_backend
    from ..scoring import save_scorer

    encoder = open_encoder(args)
    scorer = fit_backend(encoder, args.audio_dir, args.scorer, progress=not args.quiet)
    if not scorer.needs_fit:
        print(f"the {args.scorer} back end needs no fitting")
        return 0
    print(f"fitted {args.scorer} for model {encoder.fingerprint} -> {save_scorer(scorer, encoder.fingerprint, args.save_to)}")
    return 0


def register(commands) -> None:
    _calibrate_parser(commands)
    _fit_backend_parser(commands)
    _eval_trials_parser(commands)


def _calibrate_parser(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="thresholds (EER, FAR 1 %%, FAR 0.1 %%) from a trial list, or for diarization's windows from training speakers; saved beside the model",
    )
    calibrate.add_argument("--trials", help="a trial list ('label enroll test' per line)")
    calibrate.add_argument("--audio-root", help="the folder the trial paths are relative to")
    calibrate.add_argument(
        "--windows", type=number_in(0.2, 30), help="instead: calibrate windows of this many seconds (diarization's --window) ..."
    )
    calibrate.add_argument("--audio-dir", help="... from recordings of training speakers (never the evaluation speakers)")
    calibrate.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default=DiarizationConfig.vad,
        help="... whose speech the detector diarize will use finds (--windows only)",
    )
    add_quiet_argument(calibrate)
    calibrate.add_argument(
        "--force", action="store_true", help="replace the model's existing calibration (its own or the shipped one; backed up)"
    )
    add_encoder_arguments(calibrate)
    add_scorer_argument(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)


def _fit_backend_parser(commands) -> None:
    backend = commands.add_parser(
        "fit-backend",
        help="fit a score back end: centered, asnorm, plda on training speakers' recordings; snorm on unlabelled recordings of the domain you will score",
    )
    backend.add_argument(
        "--audio-dir",
        required=True,
        help="training speakers' corpus (never the evaluation speakers); for snorm any recordings of the target domain, no labels",
    )
    backend.add_argument(
        "--save-to", help="a folder of model homes to save it in (default: the user's); deep_speaker/pretrained/models ships it"
    )
    add_encoder_arguments(backend)
    add_scorer_argument(backend)
    add_quiet_argument(backend)
    backend.set_defaults(handler=cmd_fit_backend)


def _eval_trials_parser(commands) -> None:
    trials = commands.add_parser("eval-trials", help="open-set verification: EER, minDCF, ROC/DET on a trial list")
    trials.add_argument("--trials", required=True, help="VoxCeleb format: 'label enroll test' per line")
    trials.add_argument("--audio-root", required=True, help="folder the trial paths are relative to")
    trials.add_argument("--json", help="write the numbers here")
    trials.add_argument("--plot", help="write ROC and DET curves to this PNG")
    trials.add_argument("--scores", help="write every trial's score here ('label enroll test score'; 'refused' where a recording was)")
    trials.add_argument(
        "--on-refused",
        dest="on_refused",
        choices=ON_REFUSED,
        default="skip",
        help="a recording without usable speech: skip its trials (counted, named, a warning; default) or stop",
    )
    add_encoder_arguments(trials)
    add_scorer_argument(trials)
    add_quiet_argument(trials)
    trials.set_defaults(handler=cmd_eval_trials)
