"""Exported speaker models (ONNX, TFLite, SavedModel): what they say about themselves, and how to run them.

Every export is waveform-in: float32 samples (batch, samples) at the model's rate, in [-1, 1], silence already
trimmed as the recipe says, -> L2-normalised embeddings (batch, dim). One row is one whole utterance (its
features are normalised over the row), so rows of a batch are never padded utterances of different lengths.
What the runtime must know (rate, trimming, fingerprint, dimension) travels with the file: inside an ONNX model
as metadata, beside a TFLite file or a SavedModel folder as `<name>.json`. The runners are here, each importing its
runtime only when a model of its kind is opened: ONNX through ONNX Runtime with no TensorFlow, TFLite and SavedModel
through TensorFlow. The writers are in `tf/export.py`.

Nothing on disk is taken on its word: the metadata carries a SHA-256 `digest` of the graph it was written for (its
weights and operators) and of its own fields, recomputed whenever the model is loaded. Weights swapped after export,
or a fingerprint, rate, trim or size edited in the metadata, no longer match and the model is refused; the output size
is also checked against the graph's. (A digest detects change; it is not a signature: whoever can write the file can
also write a new export and label it, as they could train a new model.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .features import FeatureConfig
from .fileio import toolkit_home

FORMAT = "deep-speaker-export/2"  # /2: the digest binds metadata to graph
STANDALONE_FORMAT = "deep-speaker-standalone/1"  # trim inside, raw recording in: for ONNX Runtime without the toolkit
METADATA_KEY = "deep_speaker"  # the ONNX metadata property holding the JSON below
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}  # anything else that is a folder: a SavedModel
RUNTIMES = ("onnx", "keras")  # what runs a Keras checkpoint: its ONNX Runtime copy, or Keras itself
DEFAULT_RUNTIME = "onnx"  # as accurate (same embeddings within 1e-4, same fingerprints), no TensorFlow, faster
QUANTISATIONS = {"onnx": (None, "int8"), "tflite": (None, "float16", "int8"), "savedmodel": (None,)}  # formats, their variants


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported model computes: its front end's recipe (trimming happens before it), identity and output."""

    fingerprint: str
    embedding_dim: int
    feature_config: FeatureConfig
    model_format: str
    quantisation: str | None = None
    max_abs_difference: float | None = None  # measured against the Keras model at export
    min_cosine: float | None = None
    digest: str | None = None  # SHA-256 of the graph and of every field above (`sealed`)
    source_sha256: str | None = None  # SHA-256 of the checkpoint file exported (the ONNX Runtime cache's key)

    def _fields(self) -> dict:
        fields = {"format": FORMAT, **asdict(self)}
        if fields["source_sha256"] is None:  # exports written before the field existed keep their digest
            del fields["source_sha256"]
        return fields

    def to_json(self) -> str:
        return json.dumps(self._fields(), indent=2)

    def sealed(self, graph: str) -> ExportMetadata:
        """This metadata with the digest binding it to the graph whose digest is `graph` (`graph_digest`)."""
        return replace(self, digest=self._expected_digest(graph))

    def _expected_digest(self, graph: str) -> str:
        fields = {key: value for key, value in self._fields().items() if key != "digest"}
        return hashlib.sha256(f"{graph}\n{json.dumps(fields, sort_keys=True)}".encode()).hexdigest()

    def verify(self, path) -> ExportMetadata:
        """Refuse unless the model at `path` and this metadata are what the exporter wrote (see the module docstring)."""
        if self.digest is None:
            raise CheckpointError(f"{path}: its metadata carries no digest; export the model again")
        if self.digest != self._expected_digest(graph_digest(path)):
            raise CheckpointError(
                f"{path}: the model's graph or metadata changed after export (the digest written with it no longer "
                "matches); refused. Export it again from the Keras model"
            )
        return self

    @classmethod
    def from_json(cls, text: str, source) -> ExportMetadata:
        try:
            data = json.loads(text)
            if isinstance(data, dict) and data.get("format") == STANDALONE_FORMAT:
                raise ValueError("a standalone export, made to run without the toolkit; open the model or fusion it was exported from")
            if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
                raise ValueError(f"not a {FORMAT} file (exports of older versions: export the model again)")
            data["feature_config"] = FeatureConfig(**data["feature_config"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{source}: unreadable deep-speaker export metadata ({error})") from None


def graph_digest(path) -> str:
    """SHA-256 of what an exported model computes with: an ONNX graph (operators, weights) without its metadata, a
    TFLite file, or every file of a SavedModel folder (names and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    kind = model_format(path)
    if kind == "onnx":
        digest.update(_onnx_without_metadata(path))
    elif kind == "tflite":
        digest.update(path.read_bytes())
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _load_onnx(path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises its own DecodeError for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None


def _onnx_without_metadata(path) -> bytes:
    graph = _load_onnx(path)
    del graph.metadata_props[:]
    return graph.SerializeToString(deterministic=True)


def check_output_size(found, metadata: ExportMetadata, path) -> None:
    """Refuse metadata whose embedding size is not the graph's output size (`found`; None where the graph leaves it open)."""
    if found is not None and int(found) != metadata.embedding_dim:
        raise CheckpointError(f"{path}: the metadata says {metadata.embedding_dim}-d embeddings, the graph outputs {int(found)}-d; refused")


def model_format(path) -> str:
    """'onnx', 'tflite' or 'savedmodel', from the path."""
    path = Path(path)
    if path.suffix in SUFFIXES:
        return SUFFIXES[path.suffix]
    if path.is_dir():
        return "savedmodel"
    raise CheckpointError(f"{path}: not an exported model (expected NAME.onnx, NAME.tflite or a SavedModel folder)")


def sidecar(path) -> Path:
    """Where a TFLite file's or SavedModel folder's metadata lives: `<name>.json` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.json")


def read_metadata(path) -> ExportMetadata:
    """The metadata of an exported model, verified against its graph (`ExportMetadata.verify`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such exported model")
    if model_format(path) == "onnx":
        properties = {p.key: p.value for p in _load_onnx(path).metadata_props}
        if METADATA_KEY not in properties:
            raise CheckpointError(f"{path}: an ONNX model without deep-speaker metadata (export it with `deep-speaker export`)")
        return ExportMetadata.from_json(properties[METADATA_KEY], path).verify(path)
    if not sidecar(path).is_file():
        raise CheckpointError(f"{path}: its metadata {sidecar(path)} is missing (export writes it beside the model)")
    try:
        text = sidecar(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{sidecar(path)}: unreadable deep-speaker export metadata ({error})") from None
    return ExportMetadata.from_json(text, sidecar(path)).verify(path)


class OnnxRunner:
    """An ONNX model run by ONNX Runtime on the CPU: `runner(batch)` -> its first output."""

    def __init__(self, path):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime's own exception types (invalid graph, unsupported op)
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({error})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})[0]


class OnnxSpeakerModel(OnnxRunner):
    """An exported model run by ONNX Runtime: `model(waveforms)` -> embeddings (batch, dim). `metadata`: what the
    file says about itself (read from it unless given, as by the exporter checking a file it has not labelled yet)."""

    def __init__(self, path, metadata: ExportMetadata | None = None):
        self.metadata = metadata or read_metadata(path)
        super().__init__(path)
        size = self.session.get_outputs()[0].shape[-1]
        check_output_size(size if isinstance(size, int) else None, self.metadata, path)


class TFLiteSpeakerModel:
    """An exported TFLite model run by TensorFlow's interpreter, resized to each batch's shape."""

    def __init__(self, path, metadata: ExportMetadata | None = None):
        import tensorflow as tf

        self.metadata = metadata or read_metadata(path)
        with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT will replace it
            warnings.simplefilter("ignore")
            try:
                self.interpreter = tf.lite.Interpreter(model_path=str(path))
            except ValueError as error:
                raise CheckpointError(f"{path}: not a readable TFLite model ({error})") from None
        self._input = self.interpreter.get_input_details()[0]["index"]
        output = self.interpreter.get_output_details()[0]
        self._output = output["index"]
        self._shape = None
        check_output_size(output["shape"][-1] if len(output["shape"]) else None, self.metadata, path)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        waveforms = np.asarray(waveforms, np.float32)
        if waveforms.shape != self._shape:
            self.interpreter.resize_tensor_input(self._input, waveforms.shape)
            self.interpreter.allocate_tensors()
            self._shape = waveforms.shape
        self.interpreter.set_tensor(self._input, waveforms)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()


class SavedModelSpeakerModel:
    """An exported SavedModel's `serve` signature."""

    def __init__(self, path, metadata: ExportMetadata | None = None):
        import tensorflow as tf

        self.metadata = metadata or read_metadata(path)
        try:
            self._loaded = tf.saved_model.load(str(path))  # keeps the variables `serve` refers to alive
        except (OSError, ValueError, AttributeError) as error:
            raise CheckpointError(f"{path}: not a readable deep-speaker SavedModel ({error})") from None
        if not hasattr(self._loaded, "serve"):
            raise CheckpointError(f"{path}: a SavedModel without the `serve` signature of a deep-speaker export")
        size = self._loaded.serve.get_concrete_function().structured_outputs.shape[-1]
        check_output_size(size, self.metadata, path)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        return np.asarray(self._loaded.serve(np.asarray(waveforms, np.float32)))


RUNNERS = {"onnx": OnnxSpeakerModel, "tflite": TFLiteSpeakerModel, "savedmodel": SavedModelSpeakerModel}


def load_exported(path, metadata: ExportMetadata | None = None):
    """A callable waveforms (batch, samples) -> embeddings for any exported model, with its `metadata` (read from
    the file unless given)."""
    return RUNNERS[model_format(path)](path, metadata)


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_cache_path(checkpoint) -> Path:
    """Where the ONNX Runtime copy of the checkpoint file `checkpoint` is written when there is none beside it: keyed
    by the file's SHA-256, so it is found (and trusted) without loading the checkpoint, hence without TensorFlow."""
    return _cache_path(file_sha256(checkpoint))


def _cache_path(sha256: str) -> Path:
    return toolkit_home() / "exports" / f"{sha256}.onnx"


def runtime_copy_beside(checkpoint) -> Path:
    """Where a shipped ONNX Runtime copy of a checkpoint lives: `NAME.onnx` beside `NAME.keras`
    (`export NAME.keras NAME.onnx --format onnx`)."""
    return Path(checkpoint).with_suffix(".onnx")


def _from_cache(checkpoint, open_copy, what: str):
    """`open_copy(path, sha256)` of the ONNX Runtime copy of `checkpoint`, beside it or in the user's cache, or None
    where there is none or it is refused (logged where it was in the cache: the caller exports again)."""
    sha256 = file_sha256(checkpoint)
    beside, cached = runtime_copy_beside(checkpoint), _cache_path(sha256)
    for path in (beside, cached):
        if not path.is_file():
            continue
        try:
            return open_copy(path, sha256)
        except CheckpointError as error:
            if path == cached:
                logging.getLogger(__name__).warning("the ONNX Runtime cache is not this model's %s (%s); exporting it again", what, error)
    return None


def _export_of_file(path, sha256: str) -> OnnxSpeakerModel:
    """The speaker model at `path`, refused unless it is a float export of exactly the file whose SHA-256 is `sha256`."""
    copy = OnnxSpeakerModel(path)
    if copy.metadata.source_sha256 != sha256 or copy.metadata.quantisation is not None:
        raise CheckpointError(f"{path}: not a float export of this checkpoint file")
    return copy


def cached_onnx(checkpoint) -> OnnxSpeakerModel | None:
    """The ONNX Runtime copy of `checkpoint` (shipped beside it, or cached by `tf.export.onnx_copy`), or None where
    there is none that is an unchanged float export of exactly this file (the caller exports it)."""
    return _from_cache(checkpoint, _export_of_file, "export")


COPY_KEY = "deep_speaker_copy"  # the ONNX metadata property of a cached copy of a model that is not a speaker model


def copy_seal(graph: str, source_sha256: str) -> str:
    """The metadata binding a cached ONNX copy to its graph (`graph_digest`) and to the checkpoint file it copies."""
    return json.dumps({"source_sha256": source_sha256, "digest": hashlib.sha256(f"{graph}\n{source_sha256}".encode()).hexdigest()})


class OnnxCopy(OnnxRunner):
    """A Keras model that is not a speaker model (the overlap detector) as ONNX Runtime runs it, from the cache:
    `copy(batch)` -> its first output. Refused unless it is an unchanged copy of the file whose SHA-256 is `source`."""

    def __init__(self, path, source_sha256: str):
        properties = {p.key: p.value for p in _load_onnx(path).metadata_props}
        try:
            seal = json.loads(properties[COPY_KEY])
        except (KeyError, ValueError):
            raise CheckpointError(f"{path}: not a deep-speaker ONNX copy") from None
        if seal.get("source_sha256") != source_sha256 or properties[COPY_KEY] != copy_seal(graph_digest(path), source_sha256):
            raise CheckpointError(f"{path}: not an unchanged copy of this model")
        super().__init__(path)


def cached_onnx_copy(checkpoint) -> OnnxCopy | None:
    """The ONNX copy of the (non-speaker) model file `checkpoint`, shipped beside it or cached, or None."""
    return _from_cache(checkpoint, OnnxCopy, "copy")
