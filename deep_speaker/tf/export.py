"""Export a speaker model, front end included, as ONNX, TFLite or a SavedModel, and prove it computes the same.

Keras's own exporters do the conversion (tf2onnx for ONNX, the TFLite converter, `ExportArchive`). What this
adds: the waveform-in signature (batch, samples) of any length, the model's recipe as metadata
(`exported.ExportMetadata`), quantisation, a parity check against the Keras model on probe waveforms before the
file is moved into place (an export that drifts is refused, not written), and atomic writes. A standalone export
(`export_standalone`) also carries the trim and a fusion's weights, and takes the raw recording.

TFLite has no float64 kernels and no TensorFlow while loops without the Flex delegate, so its copy computes the
front end in float32 and unrolls recurrent layers (GE2E's LSTM runs over fixed 160-frame partials).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np

from ..audio import SAMPLE_RATE
from ..checkpoints import require_finite_weights
from ..errors import CheckpointError, ConfigError
from ..exported import (
    COPY_KEY,
    METADATA_KEY,
    QUANTISATIONS,
    STANDALONE_FORMAT,
    ExportMetadata,
    OnnxCopy,
    OnnxSpeakerModel,
    copy_seal,
    file_sha256,
    graph_digest,
    load_exported,
    onnx_cache_path,
    sidecar,
)
from ..layers import Fbank
from ..layers.trim import SilenceTrim
from ..models import feature_config_of, model_fingerprint
from ..models.speaker_model import require_speaker_model

PARITY_BOUND = {"savedmodel": 1e-4, "onnx": 1e-4, "tflite": 1e-3}  # largest |difference| of a float export
PROBE_SECONDS = (1.3, 3.7)  # two lengths: the signature takes any length


def probe_waveforms(sample_rate: int, seconds=PROBE_SECONDS, seed: int = 0) -> list[np.ndarray]:
    """Speech-like test signals (a gliding harmonic tone with syllable-rate amplitude and a little noise)."""
    rng = np.random.default_rng(seed)
    waveforms = []
    for duration in seconds:
        t = np.arange(int(duration * sample_rate)) / sample_rate
        pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
        waveforms.append((0.2 * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return waveforms


def for_tflite(model: keras.Model) -> keras.Model:
    """A copy of `model` TFLite's builtin operators can run: float32 front end, unrolled recurrent layers."""

    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, Fbank):
            config["precision"] = "float32"
        if isinstance(layer, keras.layers.RNN):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def _signature():
    return [keras.InputSpec(shape=(None, None), dtype="float32", name="waveform")]


def _write_onnx(model: keras.Model, path: Path, quantisation: str | None) -> None:
    import onnx

    float_path = path.with_name(f"float_{path.name}") if quantisation else path
    with warnings.catch_warnings():  # Keras's tf2onnx shim announces a NumPy change
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(float_path), format="onnx", input_signature=_signature(), verbose=False)
    if quantisation == "int8":  # weights of matrix products and convolutions in int8; the float64 front end stays exact
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)  # its advice to pre-process, and a note per float64 front-end tensor it leaves alone
        try:
            quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        float_path.unlink()
    onnx.checker.check_model(str(path))


def _write_tflite(model: keras.Model, path: Path, quantisation: str | None) -> None:
    import tensorflow as tf

    options = {}
    if quantisation is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]  # alone: int8 weights (dynamic range)
    if quantisation == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    for_tflite(model).export(str(path), format="litert", input_signature=_signature(), verbose=False, **options)


def _write_savedmodel(model: keras.Model, path: Path, quantisation: str | None) -> None:
    model.export(str(path), format="tf_saved_model", input_signature=_signature(), verbose=False)


WRITERS = {"onnx": _write_onnx, "tflite": _write_tflite, "savedmodel": _write_savedmodel}


def _attach_metadata(path: Path, model_format: str, metadata: ExportMetadata) -> ExportMetadata:
    """Write `metadata`, sealed with the digest of the graph at `path`, into the model or beside it; returns it sealed."""
    metadata = metadata.sealed(graph_digest(path))
    if model_format == "onnx":
        import onnx

        graph = onnx.load(str(path))
        del graph.metadata_props[:]
        graph.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())
        onnx.save(graph, str(path))
    else:
        sidecar(path).write_text(metadata.to_json())
    return metadata


def _compare(runner, model: keras.Model, waveforms) -> tuple[float, float]:
    """(largest |difference|, smallest cosine) of exported vs Keras outputs (embeddings, or a detector's logits), one
    waveform per call."""
    differences, cosines = [], []
    for waveform in waveforms:
        expected = np.asarray(model.predict_on_batch(waveform[None]), np.float32)[0]
        found = np.asarray(runner(waveform[None]), np.float32)[0]
        differences.append(float(np.max(np.abs(found - expected))))
        cosines.append(float(found @ expected / max(np.linalg.norm(found) * np.linalg.norm(expected), 1e-12)))
    return float(np.max(differences)), float(np.min(cosines))  # NumPy's max and min keep a NaN (Python's may not)


def _move_into_place(staged: Path, target: Path) -> None:
    """Rename the finished export (and its sidecar) onto `target`, replacing an existing one."""
    for source, destination in ((staged, target), (sidecar(staged), sidecar(target))):
        if not source.exists():
            continue
        if destination.is_dir():
            old = destination.with_name(f".{destination.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(destination, old)
            os.replace(source, destination)
            shutil.rmtree(old)
        else:
            os.replace(source, destination)


def _is_export(path: Path) -> bool:
    """Whether `path` holds an earlier export (whatever its state): what `force` may replace."""
    try:
        if path.suffix == ".onnx":
            import onnx

            return path.is_file() and any(p.key == METADATA_KEY for p in onnx.load(str(path), load_external_data=False).metadata_props)
        metadata = json.loads(sidecar(path).read_text())
        return isinstance(metadata, dict) and str(metadata.get("format", "")).startswith("deep-speaker-export/")
    except Exception:  # unreadable in any way: not something we wrote
        return False


def export_model(
    model: keras.Model,
    target,
    model_format: str = "onnx",
    quantisation: str | None = None,
    force: bool = False,
    source="model",
    source_sha256: str | None = None,
) -> ExportMetadata:
    """Write `model` (a waveform-in speaker model) to `target` in `model_format`; returns the metadata written
    (`source_sha256`, the checkpoint file's digest, labels the ONNX Runtime cache).

    A float export whose embeddings differ from Keras's by more than `PARITY_BOUND` on the probe waveforms is
    refused (`CheckpointError`) and nothing is written; a quantised one records its smallest cosine instead.
    """
    require_finite_weights(require_speaker_model(model, source), source)
    if model_format not in QUANTISATIONS:
        raise ConfigError(f"unknown export format {model_format!r}; choose from {sorted(QUANTISATIONS)}")
    if quantisation not in QUANTISATIONS[model_format]:
        allowed = ", ".join(q for q in QUANTISATIONS[model_format] if q) or "none"
        raise ConfigError(f"{model_format} export has no {quantisation} variant (quantisations for {model_format}: {allowed})")
    target = Path(target)
    if target.name in ("", ".", ".."):
        raise ConfigError(f"{target}: name the export (NAME.onnx, NAME.tflite or a new SavedModel folder), not a folder like '{target}'")
    expected_suffix = {"onnx": ".onnx", "tflite": ".tflite"}.get(model_format)
    if expected_suffix and target.suffix != expected_suffix:
        raise ConfigError(f"{target}: a {model_format} export is written to NAME{expected_suffix}")
    if model_format == "savedmodel" and target.suffix in (".onnx", ".tflite", ".keras"):
        raise ConfigError(f"{target}: a SavedModel is a folder; name it without {target.suffix}")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass force=True (--force) to replace it")
    if target.exists() and not _is_export(target):
        raise ConfigError(f"{target}: exists and is not a deep-speaker export; force replaces earlier exports only (remove it yourself)")
    target.parent.mkdir(parents=True, exist_ok=True)
    config = feature_config_of(model)
    fingerprint = model_fingerprint(model)
    metadata = ExportMetadata(
        fingerprint if quantisation is None else f"{fingerprint}-{quantisation}",
        int(model.output_shape[-1]),
        config,
        model_format,
        quantisation,
        source_sha256=source_sha256,
    )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
        staged = Path(staging) / target.name
        WRITERS[model_format](model, staged, quantisation)
        difference, cosine = _compare(load_exported(staged, metadata), model, probe_waveforms(config.sample_rate))
        if not np.isfinite(cosine) or (quantisation is None and not difference <= PARITY_BOUND[model_format]):  # NaN fails
            raise CheckpointError(
                f"{target}: the {model_format} export differs from the Keras model by {difference:.2e} "
                f"(bound {PARITY_BOUND[model_format]:.0e}); not written"
            )
        metadata = _attach_metadata(staged, model_format, replace(metadata, max_abs_difference=difference, min_cosine=cosine))
        _move_into_place(staged, target)
    return metadata


def onnx_copy(checkpoint, model: keras.Model, target=None) -> OnnxSpeakerModel:
    """The speaker model file `checkpoint` (loaded as `model`) as ONNX Runtime runs it: exported (parity-checked) to
    `target` (default: the user's cache, `exported.onnx_cache_path`), labelled with the file's SHA-256, so later
    runs find it without Keras (`exported.cached_onnx`)."""
    sha256 = file_sha256(checkpoint)
    path = Path(target or onnx_cache_path(checkpoint))
    path.unlink(missing_ok=True)
    print(f"{checkpoint}: exporting it once for ONNX Runtime (parity-checked; kept as {path})", file=sys.stderr)
    export_model(model, path, "onnx", source=checkpoint, source_sha256=sha256)
    return OnnxSpeakerModel(path)


def onnx_model_copy(checkpoint, model: keras.Model, target=None, bound: float = 1e-3) -> OnnxCopy:
    """A waveform-in Keras model that is not a speaker model (the overlap detector) as ONNX Runtime runs it: exported
    to `target` (default: the user's cache), its outputs on the probe waveforms within `bound` of Keras's (else
    refused, nothing written), sealed to the file's SHA-256 (`exported.copy_seal`)."""
    import onnx

    sha256 = file_sha256(checkpoint)
    path = Path(target or onnx_cache_path(checkpoint))
    print(f"{checkpoint}: exporting it once for ONNX Runtime (parity-checked; kept as {path})", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name
        _write_onnx(model, staged, None)
        graph = onnx.load(str(staged))
        graph.metadata_props.add(key=COPY_KEY, value=copy_seal(graph_digest(staged), sha256))
        onnx.save(graph, str(staged))
        difference, _ = _compare(OnnxCopy(staged, sha256), model, probe_waveforms(16000))
        if not difference <= bound:  # NaN fails
            raise CheckpointError(f"{checkpoint}: its ONNX copy differs from the Keras model by {difference:.2e} (bound {bound:.0e})")
        os.replace(staged, path)
    return OnnxCopy(path, sha256)


def standalone_model(parts) -> keras.Model:
    """One graph for an encoder's `parts` [(speaker model, trim, scale)]: the raw recording in (`waveform`, samples at
    16 kHz), each part trimmed as its recipe says (`SilenceTrim`), embedded and scaled, side by side (`embedding`,
    (1, dim)): a fusion's z-normalisation and weights are its scales, so the cosine of two outputs is its score."""
    waveform = keras.Input(batch_shape=(None,), name="waveform")
    embeddings = []
    for index, (model, trim, scale) in enumerate(parts):
        member = keras.Model(model.inputs, model.outputs[0], name=f"member_{index}")  # the same layers, a name of its own
        embedding = member(SilenceTrim(trim, name=f"trim_{index}")(waveform))
        embeddings.append(keras.layers.Rescaling(scale)(embedding) if scale != 1.0 else embedding)
    output = embeddings[0] if len(embeddings) == 1 else keras.layers.Concatenate()(embeddings)
    return keras.Model(waveform, output, name="standalone")


def export_standalone(encoder, target, calibration=None, force: bool = False) -> dict:
    """Write the Keras `encoder` (one model or a fusion) as one ONNX graph that needs nothing but ONNX Runtime: input
    `waveform` (one recording, any length, 16 kHz mono float32, untrimmed), output `embedding` (1, dim); its identity,
    trims and `calibration` (thresholds, LLR map) in the metadata, sealed by a digest. Refused unless its embeddings of
    probe recordings (speech with silence around it) equal the toolkit's within `PARITY_BOUND`; returns the metadata."""
    import onnx

    target = Path(target)
    if target.suffix != ".onnx":
        raise ConfigError(f"{target}: a standalone export is written to NAME.onnx")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass force=True (--force) to replace it")
    parts = [(part.speaker_model, part.feature_config.trim, scale) for part, scale in encoder.parts]
    if any(model is None for model, _, _ in parts):
        raise ConfigError("a standalone export is built from Keras models: open the model or fusion with runtime='keras'")
    model = standalone_model(parts)
    metadata = {
        "format": STANDALONE_FORMAT,
        "fingerprint": encoder.fingerprint,
        "embedding_dim": encoder.embedding_dim,
        "sample_rate": SAMPLE_RATE,
        "trims": [trim for _, trim, _ in parts],
        "calibration": None if calibration is None else asdict(calibration),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
        staged = Path(staging) / target.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            signature = [keras.InputSpec(shape=(None,), dtype="float32", name="waveform")]
            model.export(str(staged), format="onnx", input_signature=signature, verbose=False)
        graph = onnx.load(str(staged))
        _rename_output(graph, "embedding")
        onnx.save(graph, str(staged))
        difference = _standalone_difference(staged, encoder)
        if not difference <= PARITY_BOUND["onnx"]:  # NaN fails
            raise CheckpointError(f"{target}: the standalone graph differs from the toolkit by {difference:.2e}; not written")
        metadata["max_abs_difference"] = difference
        metadata["digest"] = hashlib.sha256(f"{graph_digest(staged)}\n{json.dumps(metadata, sort_keys=True)}".encode()).hexdigest()
        graph = onnx.load(str(staged))
        graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
        onnx.save(graph, str(staged))
        onnx.checker.check_model(str(staged))
        os.replace(staged, target)
    return metadata


def _rename_output(graph, name: str) -> None:
    """The graph's one output renamed `name` wherever it is produced or used."""
    old = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [name if value == old else value for value in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    graph.graph.output[0].name = name


def _standalone_difference(path: Path, encoder) -> float:
    """Largest |difference| between the graph's and the toolkit's embeddings of probe speech with silence around it."""
    from ..exported import OnnxRunner

    runner = OnnxRunner(path)
    rng = np.random.default_rng(1)
    differences = []
    for speech in probe_waveforms(SAMPLE_RATE):
        silence = (0.0005 * rng.standard_normal(SAMPLE_RATE // 2)).astype(np.float32)
        recording = np.concatenate([silence, speech, silence])
        found = np.asarray(runner.session.run(["embedding"], {"waveform": recording})[0], np.float32)[0]
        expected = encoder.embed_waveforms([recording])[0]
        differences.append(np.max(np.abs(found - expected)))
    return float(np.max(differences))  # NumPy's max keeps a NaN
