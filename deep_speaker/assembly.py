"""The assembly floor: where encoders, runtimes, decision makers, attacks, diarizers and teachers are put together.

Lower modules take the parts they need (an encoder, a gradient engine, a spoof gate, a teacher) and never choose or
build them; the command line, the HTTP service and the benchmarks call this module. One path gives one encoder:

    path                      runtime "onnx" (default)                               runtime "keras"
    NAME.keras / legacy .h5   ExportedEncoder over the model's ONNX Runtime copy      SpeakerEncoder (Keras)
    NAME.onnx/.tflite/folder  ExportedEncoder                                         ExportedEncoder
    NAME.fusion.json          FusedEncoder of its members, each opened by these rules
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .embedding import Encoder, ExportedEncoder, SpeakerEncoder
from .enrol import Registry, SpeakerRegistry, is_database_url
from .errors import CheckpointError, ConfigError
from .evaluation import Trials, evaluate_trials
from .exported import DEFAULT_RUNTIME, RUNTIMES, SUFFIXES, cached_onnx, cached_onnx_copy
from .score_fusion import (
    DEFAULT_SYSTEM,
    FUSION_SUFFIX,
    FusedEncoder,
    checked_plan,
    fit_fusion,
    fit_weights,
    impostor_spreads,
    leave_one_domain_out,
    read_fusion,
)

KERAS_ONLY = ("crop_frames", "bfloat16", "waveform_in")  # SpeakerEncoder options an exported model cannot honour


def load_encoder(path=None, runtime: str = DEFAULT_RUNTIME, **encoder_options) -> Encoder:
    """The encoder of a model, export or fusion file (None: the shipped default system); `encoder_options` go to
    every one-model encoder (a fusion's members included). `runtime="onnx"` runs Keras models through ONNX Runtime:
    their copy beside them (`NAME.onnx`, shipped with the pretrained models) or exported once with Keras,
    parity-checked and cached by the checkpoint file's SHA-256, so later runs need no TensorFlow; same fingerprints,
    calibrations and stores. `runtime="keras"` runs Keras (needed for crops of features and bfloat16)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
    path = Path(DEFAULT_SYSTEM if path is None else path)
    if path.name.endswith(FUSION_SUFFIX):
        members = [load_encoder(path.parent / member.checkpoint, runtime, **encoder_options) for member in read_fusion(path)]
        return FusedEncoder(path, members)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file", cli_hint="pass --checkpoint-file")
    if path.suffix in SUFFIXES or path.is_dir():
        return ExportedEncoder(path, **_exported_options(encoder_options))
    if runtime == "onnx":
        return ExportedEncoder(_onnx_runner(path), checkpoint=path, **_exported_options(encoder_options))
    return SpeakerEncoder(path, **encoder_options)


def _onnx_runner(checkpoint):
    """The cached ONNX Runtime copy of a checkpoint file (no TensorFlow), exported once with Keras when there is none."""
    cached = cached_onnx(checkpoint)
    if cached is not None:
        return cached
    from .model_files import load_model
    from .tf.export import onnx_copy

    return onnx_copy(checkpoint, load_model(checkpoint))


def _exported_options(options: dict) -> dict:
    """The options an exported model takes: the Keras-only ones are refused when set (the crop seed and XLA, which
    only matter for crops, are dropped)."""
    asked = [name for name in KERAS_ONLY if options.get(name) not in (None, False)]
    if asked:
        raise ConfigError(
            f"{', '.join(asked)} with an exported model or the ONNX runtime: crop_frames needs the Keras runtime (--runtime "
            "keras) without waveform_in (crops are cut from features), and an export is waveform-in and computes in its own precision"
        )
    return {name: value for name, value in options.items() if name not in (*KERAS_ONLY, "seed", "jit_compile")}


def fuse(
    checkpoints, paths, labels, target, weights=None, domains=(), report: dict | None = None, progress: bool = True, runtime=DEFAULT_RUNTIME
) -> Path:
    """Embed the recordings `paths` of training speakers `labels` with each model (on `runtime`) and write the fusion `target`
    (`score_fusion.fit_fusion`). With `domains` (two or more `(trial list, audio root)` of labelled trials, one per
    domain) the weights are fitted on their trials (`score_fusion.fit_weights`) instead of given, and `report`
    (a dict, if given) receives the leave-one-domain-out check of that fit (`score_fusion.leave_one_domain_out`)."""
    if domains and weights is not None:
        raise ConfigError("give the fusion's weights or the domains to fit them on, not both")
    if domains and len({str(trials) for trials, _ in domains}) < max(2, len(domains)):
        raise ConfigError(f"fitting fusion weights needs trial lists of two or more different domains, got {len(domains)}")
    checked_plan(checkpoints, target, weights)
    encoders = [load_encoder(checkpoint, runtime) for checkpoint in checkpoints]
    embeddings = [encoder.embed_many(paths, progress=progress) for encoder in encoders]
    if domains:
        spreads = np.array(impostor_spreads(checkpoints, embeddings, labels))
        scored = {}
        for trials, audio_root in domains:
            results = [evaluate_trials(encoder, trials, audio_root, progress=progress) for encoder in encoders]
            scores = np.stack([result.scores for result in results], axis=1) / spreads
            kept = np.all(np.isfinite(scores), axis=1)
            scored[str(trials)] = (scores[kept], Trials.read(trials).labels[kept])
        weights = fit_weights(scored).tolist()
        if report is not None:
            report.update(leave_one_domain_out(scored))
    return fit_fusion(checkpoints, embeddings, labels, target, weights)


def build_verifier(encoder: Encoder, scorer=None, operating_point: str = "far1", threshold=None, detect_spoof=None):
    """The `Verifier` of an encoder, with the spoof detector file `detect_spoof` (if any) as its gate."""
    from .verification import Verifier

    gate = None
    if detect_spoof:
        from .adversarial.detector import SpoofDetector

        gate = SpoofDetector(detect_spoof)
    return Verifier(encoder, scorer, operating_point=operating_point, threshold=threshold, spoof_gate=gate)


def attack(encoder: Encoder, source, reference, threshold: float, targeted: bool, config=None, generator=None, progress=False):
    """`adversarial.attack_recording` with TensorFlow's score gradient as the engine white-box methods follow."""
    from .adversarial import AttackConfig, attack_recording
    from .tf.gradients import ScoreGradient

    config = config or AttackConfig()
    return attack_recording(encoder, source, reference, threshold, targeted, config, generator, progress, score_gradient=ScoreGradient)


def load_diarizer(checkpoint=None, config=None, overlap_detector=None, encoder: Encoder | None = None, runtime: str = DEFAULT_RUNTIME):
    """A `Diarizer` with the model or fusion file `checkpoint` (None: the default system), or with the models of an
    `encoder` already loaded (the service's), set for windows: no trimming and no speech check (the regions are
    speech already), Keras models in batched crops of exactly one window; and the overlap detector file given
    (None: the shipped one; none at all with `config.exclusive`). `runtime="onnx"` runs the models and the detector
    through ONNX Runtime (no TensorFlow once their copies are cached)."""
    from .diarization.pipeline import DiarizationConfig, Diarizer, window_frames

    config = config or DiarizationConfig()
    options = {"trim": "none", "require_speech": False, "crop_frames": window_frames(config)}
    encoder = _windowed(encoder or load_encoder(checkpoint, runtime), options)
    return Diarizer(encoder, config, None if config.exclusive else _overlap_detector(overlap_detector, runtime))


def _overlap_detector(path, runtime: str):
    """The overlap detector file (None: the shipped one) as Keras runs it, or its cached ONNX Runtime copy."""
    from .diarization.pipeline import DEFAULT_OVERLAP_DETECTOR, load_overlap_detector

    if runtime == "keras":
        return load_overlap_detector(path)
    path = path or DEFAULT_OVERLAP_DETECTOR
    cached = cached_onnx_copy(path)
    if cached is not None:
        return cached
    from .tf.export import onnx_model_copy

    return onnx_model_copy(path, load_overlap_detector(path))


def _windowed(encoder: Encoder, options: dict) -> Encoder:
    """The same models, already loaded (weights shared), under the diarizer's window `options`."""
    if isinstance(encoder, FusedEncoder):
        return FusedEncoder(encoder.checkpoint, [_windowed(member, options) for member in encoder.members])
    if isinstance(encoder, ExportedEncoder):  # waveform-in: windows run one by one, uncropped
        return ExportedEncoder(encoder.runner, encoder.checkpoint, **_exported_options({**options, "crop_frames": None}))
    return SpeakerEncoder(encoder.checkpoint, model=encoder.speaker_model, **options)


def open_registry(
    location, encoder: Encoder | None = None, read_only: bool | None = None, concurrent: bool = False, create: bool = True
) -> Registry:
    """The enrolment store at `location`: an SQLite file (`enrol.SpeakerRegistry`), or a PostgreSQL database URL
    (`postgres_store.PostgresRegistry`: shared by many processes; `concurrent` is what it always is)."""
    if is_database_url(location):
        from .postgres_store import PostgresRegistry

        return PostgresRegistry(str(location), encoder, read_only=bool(read_only), create=create)
    return SpeakerRegistry(location, encoder, read_only, concurrent, create)


def load_teacher(recipe) -> Encoder | None:
    """The teacher a classification recipe distils from (`loss.distill_from`), or None."""
    return load_encoder(recipe.loss.distill_from) if recipe.loss.distill_from else None


__all__ = ["attack", "build_verifier", "fuse", "load_diarizer", "load_encoder", "load_teacher", "open_registry"]
