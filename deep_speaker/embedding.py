"""Audio -> features -> model -> L2-normalised speaker embedding.

`SpeakerEncoder` loads a model once and embeds files or waveforms. By default it uses the whole
utterance (deterministic: the same file always gives the same embedding, where the reference's random
160-frame crop did not); `crop_frames=160` reproduces the reference's input, with a seeded crop.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .audio import SAMPLE_RATE, to_model_input, trim_silence
from .checkpoints import load_model
from .errors import CheckpointError
from .features import compute_features, crop_or_pad, file_features
from .models import feature_config_of

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "deep_speaker.keras"


def cosine_score(embedding_a: np.ndarray, embedding_b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (a plain dot product when both are L2-normalised)."""
    a = np.asarray(embedding_a, dtype=np.float64).ravel()
    b = np.asarray(embedding_b, dtype=np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def to_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of `model` computing in bfloat16 with float32 weights (fast on CPUs with AVX512_BF16)."""

    def clone_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


class SpeakerEncoder:
    """Embed recordings with a speaker model, computing the features that model was trained on.

    `trim` overrides the model's silence removal ('reference', 'energy' or 'none'). With `jit_compile`,
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
    ):
        if model is None:
            checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
            if not checkpoint.exists():
                raise CheckpointError(f"{checkpoint}: no such checkpoint; pass --checkpoint_file / checkpoint=PATH")
            model = load_model(checkpoint)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.model = to_bfloat16(model) if bfloat16 else model
        self.crop_frames = crop_frames
        self.seed = seed
        self.batch_size = batch_size
        self.feature_config = feature_config_of(model)
        if trim is not None:
            self.feature_config = replace(self.feature_config, trim=trim)
        self.embedding_dim = int(self.model.output_shape[-1])
        self._compiled_model = None
        if jit_compile and crop_frames is not None and not bfloat16:
            self._compiled_model = keras.Model(self.model.inputs, self.model.outputs, name=f"{self.model.name}_xla")
            self._compiled_model.compile(jit_compile=True)

    def features(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Model-input features (frames, 64) of a file path or a waveform array at `sample_rate`."""
        if isinstance(source, (str, os.PathLike)):
            return file_features(source, self.feature_config)
        waveform = to_model_input(source, sample_rate, self.feature_config.sample_rate)
        speech = trim_silence(waveform, self.feature_config.trim)
        return compute_features(speech, self.feature_config)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Graph-mode inference (retraces little: Keras relaxes the frame axis after a few lengths);
        XLA for full batches of crops, so partial batches never trigger another compile."""
        full_batch = len(batch) == self.batch_size and self._compiled_model is not None
        model = self._compiled_model if full_batch else self.model
        return np.asarray(model.predict_on_batch(batch[..., None]), dtype=np.float32)

    def _crop(self, features: np.ndarray) -> np.ndarray:
        """A seeded 160-frame window; the seed depends on the length only, so a file always gets the same crop."""
        return crop_or_pad(features, self.crop_frames, np.random.default_rng([self.seed, features.shape[0]]))

    def embed_features(self, feature_list: list[np.ndarray]) -> np.ndarray:
        """Embeddings (n, dim) of precomputed features; crops are batched, whole utterances run one by one."""
        if not feature_list:
            return np.zeros((0, self.embedding_dim), np.float32)
        if self.crop_frames is None:
            return np.stack([self._forward(f[None])[0] for f in feature_list])
        crops = np.stack([self._crop(f) for f in feature_list])
        return np.concatenate([self._forward(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)])

    def embed(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """L2-normalised float32 embedding of one file or waveform."""
        return self.embed_features([self.features(source, sample_rate)])[0]

    def embed_many(self, paths, progress: bool = False, workers: int = 2) -> np.ndarray:
        """Embeddings (n, dim) of many files, in order.

        Decoding and features run in `workers` threads up to two batches ahead of the model, so the
        model does not wait for the next batch's features. BLAS stays single-threaded meanwhile: its
        spinning threads would otherwise compete with the model's for the same cores.
        """
        paths = list(paths)
        embeddings = []
        with (
            threadpool_limits(limits=1, user_api="blas"),
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(paths), disable=not progress, unit="utt", desc="embed") as bar,
        ):
            pending = deque(pool.submit(self.features, p) for p in paths[: 2 * self.batch_size])
            next_path = len(pending)
            while pending:
                chunk = [pending.popleft().result() for _ in range(min(self.batch_size, len(pending)))]
                for path in paths[next_path : next_path + len(chunk)]:
                    pending.append(pool.submit(self.features, path))
                next_path += len(chunk)
                embeddings.append(self.embed_features(chunk))
                bar.update(len(chunk))
        return np.concatenate(embeddings) if embeddings else np.zeros((0, self.embedding_dim), np.float32)

    def score(self, source_a, source_b) -> float:
        """Cosine similarity of two recordings."""
        return cosine_score(self.embed(source_a), self.embed(source_b))
