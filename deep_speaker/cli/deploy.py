"""Commands that get, convert, combine, export and serve models."""

from __future__ import annotations

import argparse
import os

from ..download import PUBLISHED
from ..enrol import store_name
from ..errors import DeepSpeakerError
from ..exported import QUANTISATIONS
from ..importers import IMPORTERS
from ..service.limits import ServiceLimits
from .common import WEIGHT, add_decision_arguments, add_quiet_argument, number_in, open_verifier, whole_number


def cmd_download_checkpoint(args) -> int:
    from ..download import download_checkpoint

    path = download_checkpoint(args.name, args.output_dir, args.url, progress=not args.quiet)
    print(f"{path} (SHA-256 verified); use it as --checkpoint-file, or `convert-checkpoint {path} model.keras`")
    return 0


def cmd_convert_checkpoint(args) -> int:
    from ..checkpoints import check_save_path, save_model
    from ..model_files import load_model

    check_save_path(args.target)
    model = load_model(args.source)
    save_model(model, args.target)
    print(f"wrote {args.target} ({model.count_params():,} weights)")
    return 0


def cmd_import_model(args) -> int:
    from ..checkpoints import check_save_path, save_model
    from ..importers import import_model

    check_save_path(args.target)
    model = import_model(args.kind, args.source)
    save_model(model, args.target)
    print(f"wrote {args.target}: {args.kind} model from {args.source} ({model.count_params():,} weights)")
    return 0


def cmd_export(args) -> int:
    from ..exported import file_sha256
    from ..model_files import load_model
    from ..score_fusion import FUSION_SUFFIX
    from ..tf.export import export_model

    if args.standalone:
        return _export_standalone(args)
    if str(args.model).endswith(FUSION_SUFFIX):
        raise DeepSpeakerError(f"{args.model}: a fusion exports as one graph with --standalone (or export each member model)")
    if _is_overlap_detector(args.model):
        return _export_overlap_detector(args)
    quantisation = "float16" if args.float16 else "int8" if args.int8 else None
    model = load_model(args.model)
    metadata = export_model(model, args.target, args.format, quantisation, args.force, args.model, file_sha256(args.model))
    print(
        f"wrote {args.target}: {args.format}{f' ({quantisation})' if quantisation else ''}, waveform (batch, samples) at "
        f"{metadata.feature_config.sample_rate} Hz -> embedding ({metadata.embedding_dim}); trim before it: {metadata.feature_config.trim}"
    )
    print(f"parity with Keras on probe waveforms: max |difference| {metadata.max_abs_difference:.2e}, min cosine {metadata.min_cosine:.6f}")
    return 0


def _export_standalone(args) -> int:
    """A model or fusion as one ONNX graph for ONNX Runtime alone (`tf.export.export_standalone`), its calibration inside."""
    from ..assembly import load_encoder
    from ..scoring.calibration import find_calibration
    from ..tf.export import export_standalone

    _require_float_onnx(args, "--standalone exports a float ONNX graph only")
    encoder = load_encoder(args.model, runtime="keras")
    calibration = find_calibration(encoder.fingerprint, encoder.checkpoint)
    metadata = export_standalone(encoder, args.target, calibration, force=args.force)
    print(
        f"wrote {args.target}: waveform (one recording, any length, 16 kHz mono, untrimmed) -> embedding (1, {metadata['embedding_dim']}); "
        f"trims inside: {', '.join(metadata['trims'])}; calibration: {'far1 ' + format(calibration.far1, '.4f') if calibration else 'none'}"
    )
    print(f"parity with the toolkit on probe recordings: max |difference| {metadata['max_abs_difference']:.2e}")
    return 0


def _require_float_onnx(args, refusal: str) -> None:
    """Refuse (with `refusal`) any format but float ONNX: what standalone exports and the detector's copy are."""
    if args.format != "onnx" or args.float16 or args.int8:
        raise DeepSpeakerError(f"{refusal} (--format onnx)")


def _is_overlap_detector(path) -> bool:
    """Whether a .keras file holds the overlap detector, read from its configuration without building it."""
    import json
    import zipfile

    from ..models.overlap import OVERLAP_NAME

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["config"]["name"] == OVERLAP_NAME
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):  # not a readable .keras: load_model says why
        return False


def _export_overlap_detector(args) -> int:
    """The overlap detector exports only as its ONNX Runtime copy (`tf.export.onnx_model_copy`)."""
    from pathlib import Path

    from ..diarization.pipeline import load_overlap_detector
    from ..tf.export import onnx_model_copy

    _require_float_onnx(args, f"{args.model}: an overlap detector exports as a float ONNX copy only")
    if Path(args.target).exists() and not args.force:
        raise DeepSpeakerError(f"{args.target} exists; pass --force to replace it")
    onnx_model_copy(args.model, load_overlap_detector(args.model), args.target)
    print(f"wrote {args.target}: the overlap detector's ONNX copy, parity-checked")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from ..assembly import load_diarizer
    from ..service import ServiceLimits, SpeakerService, create_app

    keys = list(args.api_key or []) + [k for k in os.environ.get("DEEP_SPEAKER_API_KEYS", "").split(",") if k]
    given = {
        "max_upload_bytes": None if args.max_upload_mb is None else int(args.max_upload_mb * 2**20),
        "max_seconds": args.max_seconds,
        "max_diarize_seconds": args.max_diarize_seconds,
        "max_concurrent": args.max_concurrent,
    }
    limits = ServiceLimits(**{name: value for name, value in given.items() if value is not None})
    verifier = open_verifier(args)  # the encoder, scorer and spoof gate (--detect-spoof) as every command builds them
    encoder = verifier.encoder
    diarizer = load_diarizer(encoder=encoder, runtime=args.runtime)  # the verifier's models, loaded once
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
        f"serving model {encoder.fingerprint} on http://{args.host}:{args.port}/ (store {store_name(args.store)}; writing {'enabled' if keys else 'disabled: no API key'})"
    )
    access_log = args.access_log and not args.quiet
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="info" if access_log else "warning", access_log=access_log)
    return 0


def cmd_fuse(args) -> int:
    from ..assembly import fuse
    from ..data.corpus import discover_utterances
    from ..score_fusion import read_fusion

    recordings = discover_utterances(args.audio_dir)
    held_out: dict = {}
    target = fuse(
        args.models,
        [r.path for r in recordings],
        [r.speaker for r in recordings],
        args.target,
        args.weights,
        domains=args.fit_weights or (),
        report=held_out,
        progress=not args.quiet,
    )
    for domain, check in held_out.items():
        members = ", ".join(f"{100 * eer:.2f} %" for eer in check["member_eers"])
        print(
            f"{domain} held out: EER {100 * check['eer']:.2f} % with weights {', '.join(f'{w:.3f}' for w in check['weights'])} "
            f"fitted on the other domains (equal weights {100 * check['equal_weights_eer']:.2f} %; members alone {members})"
        )
    weights = [member.weight for member in read_fusion(target)]
    print(
        f"wrote {target}: score fusion of {len(args.models)} models, weights {', '.join(f'{w:.3f}' for w in weights)} "
        f"(impostor spreads from {len(recordings)} recordings in {args.audio_dir})"
    )
    return 0


def cmd_ensemble(args) -> int:
    from ..checkpoints import check_save_path, save_model
    from ..model_files import load_model
    from ..models.ensemble import build_ensemble

    check_save_path(args.target)
    model = build_ensemble([load_model(path) for path in args.models], args.weights)
    save_model(model, args.target)
    print(
        f"wrote {args.target}: {len(args.models)} models fused by score weights {model.get_layer('backbone').get_layer('score_fusion').fusion_weights} ({model.count_params():,} weights)"
    )
    return 0


def register(commands) -> None:
    _download_checkpoint_parser(commands)
    _convert_checkpoint_parser(commands)
    _import_model_parser(commands)
    _export_parser(commands)
    _serve_parser(commands)
    _ensemble_parser(commands)
    _fuse_parser(commands)


def _download_checkpoint_parser(commands) -> None:
    download = commands.add_parser("download-checkpoint", help="the reference's published checkpoints, resumable, SHA-256 verified")
    download.add_argument(
        "name", choices=tuple(PUBLISHED), help="; ".join(f"{name}: {entry.description}" for name, entry in PUBLISHED.items())
    )
    download.add_argument("--output-dir", default=".", help="folder for the .h5 (default: here)")
    download.add_argument("--url", help="a mirror of the same file (default: the authors' Google Drive link)")
    add_quiet_argument(download)
    download.set_defaults(handler=cmd_download_checkpoint)


def _convert_checkpoint_parser(commands) -> None:
    convert = commands.add_parser("convert-checkpoint", help="legacy Keras 2 .h5 -> native .keras")
    convert.add_argument("source")
    convert.add_argument("target")
    convert.set_defaults(handler=cmd_convert_checkpoint)


def _import_model_parser(commands) -> None:
    imported = commands.add_parser(
        "import-model", help="a pretrained model of another toolkit (PyTorch checkpoint, read without torch) -> .keras"
    )
    imported.add_argument("kind", choices=tuple(IMPORTERS), help="; ".join(f"{kind}: {reads}" for kind, (_, _, reads) in IMPORTERS.items()))
    imported.add_argument("source")
    imported.add_argument("target")
    imported.set_defaults(handler=cmd_import_model)


def _export_parser(commands) -> None:
    export = commands.add_parser(
        "export",
        help="waveform-in ONNX / TFLite / SavedModel of a model, front end included, parity-checked",
        description="A float ONNX export written beside its model as NAME.onnx is the copy every command then runs on "
        "ONNX Runtime, without TensorFlow (the shipped models carry theirs).",
    )
    export.add_argument("model", help="a .keras or Keras 2 .h5 speaker model, a fusion (--standalone), or the overlap detector (ONNX only)")
    export.add_argument("target", help="NAME.onnx, NAME.tflite, or a SavedModel folder")
    export.add_argument("--format", choices=tuple(QUANTISATIONS), required=True)
    precision = export.add_mutually_exclusive_group()
    precision.add_argument("--float16", action="store_true", help="TFLite: float16 weights")
    precision.add_argument("--int8", action="store_true", help="ONNX or TFLite: int8 weights (dynamic range)")
    export.add_argument(
        "--standalone",
        action="store_true",
        help="one ONNX graph for ONNX Runtime alone: the raw recording in (trim inside), a fusion's members and weights, "
        "its calibration in the metadata (see docs/deployment.md)",
    )
    export.add_argument("--force", action="store_true", help="replace an existing export")
    export.set_defaults(handler=cmd_export)


def _serve_parser(commands) -> None:
    serve = commands.add_parser("serve", help="HTTP service and web page: embed, verify, enrol, identify, list, remove, diarize")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=whole_number(0, 65535), default=8000)
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True, help="log every request (method, path, status)")
    serve.add_argument(
        "--api-key",
        dest="api_key",
        action="append",
        help="a key for enrolling and removing (repeatable; also DEEP_SPEAKER_API_KEYS=k1,k2)",
    )
    limits = ServiceLimits()
    serve.add_argument(
        "--max-upload-mb",
        type=number_in(0, 4096, low_open=True),
        help=f"largest request body (default {limits.max_upload_bytes / 2**20:g} MB)",
    )
    serve.add_argument(
        "--max-seconds", type=number_in(0, 86400, low_open=True), help=f"longest recording (default {limits.max_seconds:g} s)"
    )
    serve.add_argument(
        "--max-diarize-seconds",
        type=number_in(0, 86400, low_open=True),
        help=f"longest recording to diarize (default {limits.max_diarize_seconds:g} s)",
    )
    serve.add_argument(
        "--max-concurrent", type=whole_number(1, 64), help=f"requests running the model at once (default {limits.max_concurrent})"
    )
    add_decision_arguments(serve)
    serve.set_defaults(handler=cmd_serve)


def _ensemble_parser(commands) -> None:
    ensemble = commands.add_parser("ensemble", help="fuse trained models with one front end into one model (weighted score fusion)")
    ensemble.add_argument("models", nargs="+", help="speaker models (.keras or legacy .h5), two or more")
    ensemble.add_argument("target", help="the fused model (.keras)")
    ensemble.add_argument("--weights", type=WEIGHT, nargs="+", help="score weights, one per model (default: equal)")
    ensemble.set_defaults(handler=cmd_ensemble)


def _fuse_parser(commands) -> None:
    fuse = commands.add_parser("fuse", help="score fusion of models with different front ends (e.g. GE2E + our own) -> NAME.fusion.json")
    fuse.add_argument("models", nargs="+", help="speaker models, two or more")
    fuse.add_argument("target", help="the fusion file (NAME.fusion.json); use it wherever a --checkpoint-file goes")
    fuse.add_argument(
        "--audio-dir",
        required=True,
        help="recordings of training speakers (not the evaluation speakers): each model's impostor-score spread",
    )
    weights = fuse.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=WEIGHT, nargs="+", help="one per model (default: equal)")
    weights.add_argument(
        "--fit-weights",
        nargs=2,
        action="append",
        metavar=("TRIALS", "AUDIO_ROOT"),
        help="a labelled trial list of one domain and its audio root; repeat for two or more domains: the weights are "
        "fitted on them (logistic regression with one offset per domain) and checked leaving one domain out",
    )
    add_quiet_argument(fuse)
    fuse.set_defaults(handler=cmd_fuse)
