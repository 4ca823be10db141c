"""Exported speaker models (ONNX, TFLite, SavedModel): what they say about themselves, and how to run them.

Every export is waveform-in: float32 samples (batch, samples) at the model's rate, in [-1, 1], silence already
trimmed as the recipe says, -> L2-normalised embeddings (batch, dim). One row is one whole utterance (its
features are normalised over the row), so rows of a batch are never padded utterances of different lengths.
What the runtime must know (rate, trimming, fingerprint, dimension) travels with the file: inside an ONNX model
as metadata, beside a TFLite file or a SavedModel folder as `<name>.json`. ONNX runs through ONNX Runtime with no
TensorFlow; TFLite and SavedModel through TensorFlow (`tf/export.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .features import FeatureConfig

FORMAT = "deep-speaker-export/1"
METADATA_KEY = "deep_speaker"  # the ONNX metadata property holding the JSON below
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}  # anything else that is a folder: a SavedModel


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

    def to_json(self) -> str:
        fields = {**self.__dict__, "feature_config": self.feature_config.__dict__}
        return json.dumps({"format": FORMAT, **fields}, indent=2)

    @classmethod
    def from_json(cls, text: str, source) -> "ExportMetadata":
        try:
            data = json.loads(text)
            if data.pop("format") != FORMAT:
                raise ValueError("not a deep-speaker export")
            data["feature_config"] = FeatureConfig(**data["feature_config"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{source}: unreadable deep-speaker export metadata ({error})") from None


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
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such exported model")
    if model_format(path) == "onnx":
        import onnx

        try:
            properties = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as error:  # onnx raises its own DecodeError for truncated or foreign files
            raise CheckpointError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
        if METADATA_KEY not in properties:
            raise CheckpointError(f"{path}: an ONNX model without deep-speaker metadata (export it with `deep-speaker export`)")
        return ExportMetadata.from_json(properties[METADATA_KEY], path)
    if not sidecar(path).is_file():
        raise CheckpointError(f"{path}: its metadata {sidecar(path)} is missing (export writes it beside the model)")
    return ExportMetadata.from_json(sidecar(path).read_text(), sidecar(path))


class OnnxSpeakerModel:
    """An exported model run by ONNX Runtime: `model(waveforms)` -> embeddings (batch, dim). `metadata`: what the
    file says about itself (read from it unless given, as by the exporter checking a file it has not labelled yet)."""

    def __init__(self, path, metadata: ExportMetadata | None = None):
        import onnxruntime

        self.metadata = metadata or read_metadata(path)
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime's own exception types (invalid graph, unsupported op)
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({error})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(waveforms, np.float32)})[0]


def load_exported(path, metadata: ExportMetadata | None = None):
    """A callable waveforms (batch, samples) -> embeddings for any exported model, with its `metadata` (read from
    the file unless given)."""
    kind = model_format(path)
    if kind == "onnx":
        return OnnxSpeakerModel(path, metadata)
    from .tf.export import SavedModelSpeakerModel, TFLiteSpeakerModel

    return (TFLiteSpeakerModel if kind == "tflite" else SavedModelSpeakerModel)(path, metadata)
