"""Audio -> features -> model -> L2-normalised speaker embedding: the `Encoder` contract and its one-model encoders.

Every encoder (`SpeakerEncoder`: a Keras model; `ExportedEncoder`: an ONNX, TFLite or SavedModel export; a score
fusion, `score_fusion.FusedEncoder`) offers the same `Encoder` contract, so the Verifier, the enrolment store and
the evaluation take any of them; `assembly.load_encoder` builds the right one from a path. A one-model encoder uses
the whole utterance by default (deterministic: the same file always gives the same embedding, where the reference's
random 160-frame crop did not); `crop_frames=160` reproduces the reference's input, with a seeded crop. The Keras
encoder computes features on the host in NumPy (the oracle, overlapped with the model) and feeds the model's
feature-in view, or (`waveform_in=True`) the trimmed waveform to the model's own `Fbank`; an export is always
waveform-in. Decoding (`audio.Recording`, once per recording), trimming, the speech check and long-recording
windows are shared, identical for every runtime.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .audio import FRAME_STEP, SAMPLE_RATE, Recording, name_of, result_or_refusal
from .errors import AudioError, CheckpointError, ConfigError
from .exported import SUFFIXES, load_exported
from .features import FeatureConfig, checked_features, crop_or_pad, require_speech
from .scoring import CosineScorer, Scorer

if TYPE_CHECKING:  # Keras (and TensorFlow) load only when a Keras model is used: exports run without them
    import keras

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "deep_speaker.keras"


def to_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of `model` computing in bfloat16 with float32 weights (fast on CPUs with AVX512_BF16)."""
    import keras

    def clone_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


class Encoder(Protocol):
    """What every encoder offers: commands, the Verifier, the enrolment store and the evaluation take any of them.
    A source is a file path, a waveform array at `sample_rate` or an `audio.Recording`."""

    fingerprint: str  # the identity that keys calibrations and enrolment stores
    embedding_dim: int
    checkpoint: Path | None

    @property
    def parts(self) -> list[tuple[ModelEncoder, float]]:
        """The one-model encoders whose embeddings, each times its scale, side by side, are this encoder's."""

    def embed(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray: ...

    def embed_waveforms(self, waveforms, sample_rate: int = SAMPLE_RATE) -> np.ndarray: ...

    def embed_many(self, sources, progress: bool = False, workers: int = 2, refused: dict | None = None) -> np.ndarray: ...


class ModelEncoder:
    """One model's encoder, whatever runs the model: its recipe's trim and speech check, whole utterances (long ones
    in windows), many files with decoding ahead of the model. Subclasses give the forward pass (`embed_features`).

    `trim` overrides the model's silence removal ('reference', 'energy' or 'none'). Recordings without
    speech (stationary noise, hum, dither) raise `NoSpeechError` unless `require_speech=False`.
    Utterances longer than `max_frames` (60 s) are embedded as the mean of equal windows of at most that
    length, so memory does not grow with duration. `fingerprint` is the model's identity (calibration and
    enrolment stores are keyed by it).
    """

    waveform_in = True  # the model takes the trimmed waveform, not features
    speaker_model = None  # the Keras model, where there is one (gradients need it)

    def __init__(self, checkpoint, identity: tuple[str, int, FeatureConfig], runtime: str, batch_size, trim, require_speech, max_frames):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_frames < 100:
            raise ConfigError(f"max_frames must be at least 100 (1 s), got {max_frames}")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.fingerprint, self.embedding_dim, feature_config = identity  # what the model is, computes from, and makes
        self.feature_config = feature_config if trim is None else replace(feature_config, trim=trim)
        self.runtime = runtime
        self.batch_size = batch_size
        self.require_speech = require_speech
        self.max_frames = max_frames

    @property
    def parts(self) -> list[tuple[ModelEncoder, float]]:
        return [(self, 1.0)]

    def speech(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The trimmed waveform at the model's rate of a file path, a waveform array at `sample_rate` or a `Recording`."""
        return Recording.of(source, sample_rate).speech(self.feature_config.trim, self.feature_config.sample_rate)

    def features(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Model-input features (frames, bands) of a source, speech-checked."""
        return checked_features(self.speech(source, sample_rate), self.feature_config, name_of(source), check=self.require_speech)

    def _prepare(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """What one recording contributes to a batch: its features, or (`waveform_in`) its checked trimmed waveform."""
        if not self.waveform_in:
            return self.features(source, sample_rate)
        speech = self.speech(source, sample_rate)
        if self.require_speech:
            require_speech(speech, name_of(source), self.feature_config.sample_rate)
        return speech

    def _waveform_forward(self, waveforms: np.ndarray) -> np.ndarray:
        """The model on a batch of trimmed waveforms (batch, samples) -> embeddings."""
        raise NotImplementedError

    def embed_features(self, feature_list: list[np.ndarray]) -> np.ndarray:
        """Embeddings (n, dim) of prepared inputs (trimmed waveforms here; see `SpeakerEncoder` for features), whole
        utterances one by one."""
        if not feature_list:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.stack([self._whole(w, self.max_frames * FRAME_STEP, self._waveform_forward) for w in feature_list])

    @staticmethod
    def _whole(utterance: np.ndarray, window: int, forward) -> np.ndarray:
        """A whole utterance's embedding; one longer than `window` (frames, or samples) is cut into equal
        windows whose embeddings are averaged, so memory stays bounded however long the recording."""
        windows = max(1, int(np.ceil(len(utterance) / window)))
        parts = np.array_split(utterance, windows)
        embedding = np.mean([np.asarray(forward(part[None]), np.float32)[0] for part in parts], axis=0)
        return (embedding / max(np.linalg.norm(embedding), 1e-12)).astype(np.float32)

    def embed(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """L2-normalised float32 embedding of one file, waveform or `Recording`."""
        return self.embed_features([self._prepare(source, sample_rate)])[0]

    def embed_waveforms(self, waveforms, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Embeddings (n, dim) of waveform arrays, each prepared as a file would be; crops run in batches."""
        return self.embed_features([self._prepare(waveform, sample_rate) for waveform in waveforms])

    def embed_many(self, sources, progress: bool = False, workers: int = 2, refused: dict | None = None) -> np.ndarray:
        """Embeddings (n, dim) of many files (or `Recording`s), in order.

        Decoding and features run in `workers` threads up to two batches ahead of the model, so the
        model does not wait for the next batch's features. BLAS stays single-threaded meanwhile: its
        spinning threads would otherwise compete with the model's for the same cores. With `refused` (a dict), a
        file whose audio cannot be used (`AudioError`: no speech, too short, corrupt...) does not stop the run: its
        row is NaN and `refused[path]` says why (a missing file still stops it: that is a wrong path, not bad audio).
        """
        sources = list(sources)
        prepare = partial(result_or_refusal, self._prepare, keep_refusals=refused is not None)
        embeddings = []
        with (
            threadpool_limits(limits=1, user_api="blas"),
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(sources), disable=not progress, unit="utt", desc=_progress_label(self)) as bar,
        ):
            pending = deque(pool.submit(prepare, s) for s in sources[: 2 * self.batch_size])
            next_source = len(pending)
            while pending:
                done = sum(len(rows) for rows in embeddings)
                chunk = [pending.popleft().result() for _ in range(min(self.batch_size, len(pending)))]
                for source in sources[next_source : next_source + len(chunk)]:
                    pending.append(pool.submit(prepare, source))
                next_source += len(chunk)
                usable = [item for item in chunk if not isinstance(item, AudioError)]
                rows = np.full((len(chunk), self.embedding_dim), np.nan, np.float32)
                if usable:
                    rows[[not isinstance(item, AudioError) for item in chunk]] = self.embed_features(usable)
                for offset, item in enumerate(chunk):
                    if isinstance(item, AudioError):
                        refused[str(name_of(sources[done + offset]))] = str(item)
                embeddings.append(rows)
                bar.update(len(chunk))
        return np.concatenate(embeddings) if embeddings else np.zeros((0, self.embedding_dim), np.float32)

    def score(self, source_a, source_b, scorer: Scorer | None = None) -> float:
        """Score of two recordings (cosine unless another `scorer` is given)."""
        return (scorer or CosineScorer()).score(self.embed(source_a), self.embed(source_b))


def _progress_label(encoder) -> str:
    return "embed" if encoder.checkpoint is None else f"embed {encoder.checkpoint.name}"


class ExportedEncoder(ModelEncoder):
    """An exported model (NAME.onnx, NAME.tflite, a SavedModel folder; `deep-speaker export`), or a runner of one
    (`exported.load_exported`), as an encoder: waveform-in, with the same trim, speech check and windows as Keras."""

    def __init__(
        self, source, checkpoint=None, batch_size: int = 32, trim: str | None = None, require_speech: bool = True, max_frames: int = 6000
    ):
        runner = load_exported(source) if isinstance(source, (str, os.PathLike)) else source
        checkpoint = checkpoint if checkpoint is not None or not isinstance(source, (str, os.PathLike)) else source
        metadata = runner.metadata
        identity = (metadata.fingerprint, metadata.embedding_dim, metadata.feature_config)
        super().__init__(checkpoint, identity, metadata.model_format, batch_size, trim, require_speech, max_frames)
        self.runner = runner
        self._waveform_forward = runner


class SpeakerEncoder(ModelEncoder):
    """Embed recordings with a Keras speaker model, computing the features that model was trained on (see
    `ModelEncoder` for `trim`, `require_speech` and `max_frames`). With `jit_compile`,
    full batches of crops (one fixed shape) run through an XLA-compiled copy of the graph sharing the
    model's weights: about 15-20 % faster on CPU after a one-off compile of a few seconds. Whole
    utterances (a new shape each) and bfloat16 (oneDNN's native bf16 kernels) always run uncompiled.

    >>> encoder = SpeakerEncoder("checkpoints/deep_speaker.keras")   # doctest: +SKIP
    >>> encoder.embed("a.wav").shape                                  # doctest: +SKIP
    (512,)
    """

    def __init__(
        self,
        checkpoint=None,
        model: keras.Model | None = None,
        crop_frames: int | None = None,
        seed: int = 123,
        batch_size: int = 32,
        trim: str | None = None,
        bfloat16: bool = False,
        jit_compile: bool = True,
        waveform_in: bool = False,
        require_speech: bool = True,
        max_frames: int = 6000,
    ):
        import keras

        from .model_files import load_model
        from .models import feature_config_of, feature_model, model_fingerprint
        from .models.speaker_model import require_speaker_model

        if model is None:
            if checkpoint is None:  # one default system, and it is load_encoder()'s
                raise ConfigError(
                    "SpeakerEncoder embeds with the model it is given (a checkpoint or a Keras model; our shipped one is "
                    "embedding.DEFAULT_CHECKPOINT); load_encoder() opens the default system"
                )
            checkpoint = Path(checkpoint)
            if not checkpoint.exists():
                raise CheckpointError(f"{checkpoint}: no such checkpoint file", cli_hint="pass --checkpoint-file")
            if checkpoint.suffix in SUFFIXES or checkpoint.is_dir():
                raise ConfigError(f"{checkpoint}: an exported model; open it with load_encoder (or ExportedEncoder)")
            model = load_model(checkpoint)
        require_speaker_model(model, checkpoint or "model")
        if crop_frames is not None and waveform_in:
            raise ConfigError("crops are cut from features: crop_frames needs the Keras runtime without waveform_in")
        if crop_frames is not None and crop_frames < 16:
            raise ConfigError(f"crop_frames must be at least 16 (the backbone reduces time by up to 16), got {crop_frames}")
        self.model = feature_model(to_bfloat16(model) if bfloat16 else model)
        identity = (model_fingerprint(model), int(self.model.output_shape[-1]), feature_config_of(model))
        super().__init__(checkpoint, identity, "keras", batch_size, trim, require_speech, max_frames)
        self.speaker_model = model
        self._waveform_forward = model.predict_on_batch
        self.waveform_in = waveform_in
        self.crop_frames = crop_frames
        self.seed = seed
        self._compiled_model = None
        if jit_compile and crop_frames is not None and not bfloat16:
            self._compiled_model = keras.Model(self.model.inputs, self.model.outputs, name=f"{self.model.name}_xla")
            self._compiled_model.compile(jit_compile=True)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Graph-mode inference (retraces little: Keras relaxes the frame axis after a few lengths);
        XLA for full batches of crops, so partial batches never trigger another compile."""
        full_batch = len(batch) == self.batch_size and self._compiled_model is not None
        model = self._compiled_model if full_batch else self.model
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    def _crop(self, features: np.ndarray) -> np.ndarray:
        """A seeded 160-frame window; the seed depends on the length only, so a file always gets the same crop."""
        return crop_or_pad(features, self.crop_frames, np.random.default_rng([self.seed, features.shape[0]]))

    def embed_features(self, feature_list: list[np.ndarray]) -> np.ndarray:
        """Embeddings (n, dim) of precomputed features (or trimmed waveforms if `waveform_in`); crops are
        batched, whole utterances run one by one."""
        if not feature_list or self.waveform_in:
            return super().embed_features(feature_list)
        if self.crop_frames is None:
            return np.stack([self._whole(f, self.max_frames, self._forward) for f in feature_list])
        crops = np.stack([self._crop(f) for f in feature_list])
        return np.concatenate([self._forward(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)])
