"""Who spoke when: speech regions, sliding-window embeddings, clustering, frame-level turns, overlapped speech.

    recording -> voice activity (10 ms blocks; Silero by default) -> speech regions (that move like speech)
              -> windows (1.5 s every 0.75 s) -> embeddings with any encoder the toolkit loads
              -> clustering: average linkage stopped at the model's EER threshold calibrated on windows of
                 this length (`calibrate_windows`; whole-recording thresholds sit higher, since a 1.5 s window
                 says less, and split one speaker into several) and for the recording's signal-to-noise ratio
                 (a noise floor makes different speakers' windows alike, so the threshold rises as the SNR falls:
                 `Calibration.at_snr`), clusters of too few windows joined to their nearest (as pyannote's
                 `min_cluster_size`), or cut at a given count; or spectral clustering with the eigengap rule or a
                 given count
              -> each 10 ms block of speech takes the speaker of the windows covering it (their votes
                 weighted by closeness to the window centre)
              -> resegmentation: a Gaussian mixture per speaker on its turns' cepstra relabels every block
              -> turns, short ones merged into neighbours
              -> overlapped speech (the overlap detector, `models.overlap`, near a change of speaker) gets the
                 nearby other speaker as a second one, unless `exclusive`
A file is read in chunks of `CHUNK_SECONDS`; what is kept per recording is small (window embeddings, 20 cepstra,
an overlap probability and a power per 10 ms), so an hour of audio diarizes in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import FRAME_LENGTH, FRAME_STEP, SAMPLE_RATE
from ..errors import ConfigError
from ..features import MIN_SPEECH_VARIATION_DB, spectro_temporal_variation, speech_check_energies
from ..fileio import atomic_write_bytes
from ..frontends.deep_speaker import fbank_energies
from ..model_home import user_home
from ..vad import VAD_METHODS, speech_activity
from .rttm import Segment

DEFAULT_OVERLAP_DETECTOR = Path(__file__).resolve().parent.parent / "pretrained" / "overlap_detector.keras"
BLOCK_SECONDS = FRAME_STEP / SAMPLE_RATE  # 10 ms
CLUSTERINGS = ("spectral", "ahc")
MAX_SPEAKERS = 100  # the most speakers a count (given, minimum or maximum) may name
CHUNK_SECONDS = 300.0  # a file is read, trimmed to speech and embedded this much at a time
RESEGMENT_CEPSTRA = 20
RESEGMENT_COMPONENTS = 8
RESEGMENT_MIN_BLOCKS = 100  # 1 s of confident speech to model a speaker
RESEGMENT_MAX_BLOCKS = 20000
MIN_OVERLAP_BLOCKS = 10  # overlapped speech shorter than 0.1 s gets no second speaker


@dataclass(frozen=True)
class DiarizationConfig:
    window: float = 1.5  # seconds per embedded window
    hop: float = 0.75  # seconds between window starts
    min_region: float = 0.3  # speech regions shorter than this are dropped
    max_gap: float = 0.3  # pauses shorter than this do not split a speech region
    min_turn: float = 0.3  # turns shorter than this join a neighbouring turn
    clustering: str = "ahc"  # ahc (calibrated threshold, or cut at a given count) | spectral (eigengap, or a given count)
    num_speakers: int | None = None  # known count: no estimation
    min_speakers: int = 1
    max_speakers: int = 10
    ahc_threshold: float | None = None  # cosine score joining two clusters; default: the EER threshold calibrated on windows
    min_cluster_windows: int = 3  # a cluster of fewer windows (or of under `min_cluster_share` of them) is no speaker
    min_cluster_share: float = 0.05
    resegment: bool = True  # frame-level resegmentation (speaker GMMs on cepstra) after clustering
    resegment_context: float = 0.3  # seconds of likelihoods averaged per block
    vad: str = "silero"  # voice-activity detector (`vad.VAD_METHODS`), chosen by benchmarks/vad.py
    exclusive: bool = False  # one speaker per instant (for ASR); otherwise detected overlap gets a second speaker
    overlap_threshold: float = 0.5  # overlap detector probability from which a block is overlapped speech

    def __post_init__(self):
        if self.vad not in VAD_METHODS:
            raise ConfigError(f"unknown voice-activity detector {self.vad!r}; choose from {VAD_METHODS}")
        if self.clustering not in CLUSTERINGS:
            raise ConfigError(f"unknown clustering {self.clustering!r}; choose from {CLUSTERINGS}")
        if not 0.2 <= self.window <= 30:
            raise ConfigError(f"the window must be 0.2-30 s, got {self.window}")
        if not 0 < self.hop <= self.window:
            raise ConfigError(f"the hop ({self.hop} s) must be positive and at most the window ({self.window} s)")
        if not 1 <= self.min_speakers <= self.max_speakers <= MAX_SPEAKERS:
            raise ConfigError(f"need 1 <= min_speakers ({self.min_speakers}) <= max_speakers ({self.max_speakers}) <= {MAX_SPEAKERS}")
        if self.num_speakers is not None and not 1 <= self.num_speakers <= MAX_SPEAKERS:
            raise ConfigError(f"num_speakers must be 1-{MAX_SPEAKERS}, got {self.num_speakers}")
        if self.ahc_threshold is not None and not -1 <= self.ahc_threshold <= 1:  # NaN fails too
            raise ConfigError(f"ahc_threshold is a cosine score in [-1, 1], got {self.ahc_threshold}")
        if not (0 <= self.min_cluster_windows <= 1000 and 0 <= self.min_cluster_share < 0.5):
            raise ConfigError(
                f"min_cluster_windows must be 0-1000 and min_cluster_share in [0, 0.5), got {self.min_cluster_windows}, {self.min_cluster_share}"
            )
        if not 0 < self.overlap_threshold < 1:  # NaN fails too
            raise ConfigError(f"overlap_threshold is a probability in (0, 1), got {self.overlap_threshold}")
        for name in ("min_region", "max_gap", "min_turn", "resegment_context"):
            if not 0 <= getattr(self, name) <= 60:
                raise ConfigError(f"{name} must be 0-60 s, got {getattr(self, name)}")


def speech_regions(samples: np.ndarray, config: DiarizationConfig = DiarizationConfig()) -> list[tuple[int, int]]:
    """[start, end) block indices of speech: the `config.vad` detector's activity, pauses under `max_gap` bridged,
    short regions and regions whose spectrum does not move like speech (stationary noise, hum:
    `features.require_speech`) dropped."""
    active = speech_activity(samples, config.vad)
    energies = speech_check_energies(samples)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    regions = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
    merged: list[tuple[int, int]] = []
    for start, end in regions:
        if merged and (start - merged[-1][1]) * BLOCK_SECONDS < config.max_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [
        (a, b)
        for a, b in merged
        if (b - a) * BLOCK_SECONDS >= config.min_region and spectro_temporal_variation(energies[a:b]) >= MIN_SPEECH_VARIATION_DB
    ]


def windows(regions: list[tuple[int, int]], config: DiarizationConfig = DiarizationConfig()) -> list[tuple[int, int]]:
    """[start, end) blocks of the windows to embed: every `hop` inside each region, the last one ending at the
    region's end; a region shorter than a window is one window."""
    length, hop = int(round(config.window / BLOCK_SECONDS)), int(round(config.hop / BLOCK_SECONDS))
    spans = []
    for start, end in regions:
        if end - start <= length:
            spans.append((start, end))
            continue
        starts = list(range(start, end - length + 1, hop))
        if starts[-1] + length < end:
            starts.append(end - length)
        spans.extend((s, s + length) for s in starts)
    return spans


def block_powers(samples: np.ndarray) -> np.ndarray:
    """Mean square of each 10 ms block of `samples` (the last one zero-padded), float64."""
    blocks = -(-samples.size // FRAME_STEP)
    padded = np.zeros(blocks * FRAME_STEP)
    padded[: samples.size] = samples
    return np.mean(padded.reshape(blocks, FRAME_STEP) ** 2, axis=1)


def recording_snr_db(powers: np.ndarray, regions: list[tuple[int, int]]) -> float:
    """How far the speech stands above the noise floor (dB): the mean power of the speech regions' blocks over the
    median power of the other blocks (the 10th percentile of all blocks when under 0.3 s lie outside speech);
    clipped to [-20, 100] (100: a digitally silent floor)."""
    speech = np.zeros(powers.size, dtype=bool)
    for start, end in regions:
        speech[start:end] = True
    if not speech.any():
        return -20.0
    quiet = powers[~speech]
    floor = np.median(quiet) if quiet.size >= 30 else np.percentile(powers, 10)
    return float(np.clip(10 * np.log10(max(np.mean(powers[speech]), 1e-20) / max(floor, 1e-20)), -20.0, 100.0))


def _eigengap_count(affinity: np.ndarray, low: int, high: int) -> int:
    """Speakers by the eigengap of the normalised Laplacian's spectrum of a pruned affinity (Park et al. 2019)."""
    laplacian = _laplacian(affinity)
    values = np.linalg.eigvalsh(laplacian)
    high = min(high, len(values) - 1)
    if high <= low:
        return max(1, min(low, len(values)))
    gaps = np.diff(values[: high + 1])
    return int(np.argmax(gaps[low - 1 : high]) + low)


def _pruned(similarity: np.ndarray, keep: float = 0.3) -> np.ndarray:
    """Each row keeps its `keep` most similar entries (at least 2), symmetrised; scores below 0 count as 0."""
    n = len(similarity)
    count = max(2, int(np.ceil(keep * n)))
    affinity = np.zeros_like(similarity)
    order = np.argsort(-similarity, axis=1)[:, :count]
    rows = np.repeat(np.arange(n), count)
    affinity[rows, order.ravel()] = np.maximum(similarity[rows, order.ravel()], 0)
    return (affinity + affinity.T) / 2


def _laplacian(affinity: np.ndarray) -> np.ndarray:
    degree = affinity.sum(axis=1)
    scale = 1 / np.sqrt(np.maximum(degree, 1e-12))
    return np.eye(len(affinity)) - scale[:, None] * affinity * scale[None, :]


def cluster(embeddings: np.ndarray, config: DiarizationConfig = DiarizationConfig(), threshold: float | None = None) -> np.ndarray:
    """Speaker label per embedding (0..k-1): (`ahc`) average linkage cut at the given count or stopped where
    clusters are less similar than `threshold`; or spectral clustering of the pruned cosine affinity with the
    count given or by eigengap."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = np.clip(unit @ unit.T, -1.0, 1.0)
    if n == 1 or config.num_speakers == 1:
        return np.zeros(n, dtype=int)
    if config.clustering == "ahc":
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        tree = linkage(squareform(1 - similarity, checks=False), method="average")
        if config.num_speakers is not None:
            return fcluster(tree, t=min(config.num_speakers, n), criterion="maxclust") - 1
        if threshold is None:
            raise ConfigError("agglomerative clustering needs a threshold: calibrate the model, or give ahc_threshold")
        labels = _absorb_small(fcluster(tree, t=1 - threshold, criterion="distance") - 1, unit, config)
        return _bounded(labels, tree, config)
    affinity = _pruned(similarity)
    count = config.num_speakers or _eigengap_count(affinity, config.min_speakers, min(config.max_speakers, n - 1))
    if count == 1:
        return np.zeros(n, dtype=int)
    import warnings

    from sklearn.cluster import SpectralClustering

    with warnings.catch_warnings():  # well-separated speakers leave the pruned graph disconnected: the ideal case
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return SpectralClustering(count, affinity="precomputed", random_state=0, assign_labels="cluster_qr").fit_predict(affinity)


def _absorb_small(labels: np.ndarray, unit: np.ndarray, config: DiarizationConfig) -> np.ndarray:
    """Labels 0..k-1 after each cluster smaller than the minimum (`min_cluster_windows`, or `min_cluster_share` of
    all windows) joins the cluster whose centroid is nearest, smallest first: a few windows are too little
    evidence for a speaker of their own (turn changes, noises, an odd syllable)."""
    minimum = max(config.min_cluster_windows, int(np.ceil(config.min_cluster_share * len(labels))))
    labels = np.unique(labels, return_inverse=True)[1]
    while True:
        ids, sizes = np.unique(labels, return_counts=True)
        if len(ids) < 2 or sizes.min() >= minimum:
            return np.unique(labels, return_inverse=True)[1]
        centroids = np.stack([unit[labels == i].mean(axis=0) for i in ids])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        smallest = int(np.argmin(sizes))
        similarity = centroids @ centroids[smallest]
        similarity[smallest] = -np.inf
        labels[labels == ids[smallest]] = ids[int(np.argmax(similarity))]


def _bounded(labels: np.ndarray, tree: np.ndarray, config: DiarizationConfig) -> np.ndarray:
    """AHC labels within [min_speakers, max_speakers]: the tree cut at the nearest allowed count if needed."""
    from scipy.cluster.hierarchy import fcluster

    count = len(np.unique(labels))
    if config.min_speakers <= count <= config.max_speakers:
        return np.unique(labels, return_inverse=True)[1]
    target = min(max(count, config.min_speakers), config.max_speakers, len(tree) + 1)
    return fcluster(tree, t=target, criterion="maxclust") - 1


def window_votes(spans: list[tuple[int, int]], labels: np.ndarray, end: int) -> np.ndarray:
    """(blocks, speakers) votes of the windows covering each 10 ms block, a window's vote falling off linearly
    from its centre."""
    votes = np.zeros((end, int(labels.max()) + 1 if len(labels) else 1))
    for (start, stop), label in zip(spans, labels):
        centre, half = (start + stop) / 2, max((stop - start) / 2, 1)
        blocks = np.arange(start, stop)
        votes[blocks, label] += 1.0 - np.abs(blocks + 0.5 - centre) / (half + 1)
    return votes


def vote(votes: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
    """Speaker per 10 ms block (-1 outside speech): the label with the largest vote."""
    block_labels = np.full(len(votes), -1)
    for start, stop in regions:
        block_labels[start:stop] = votes[start:stop].argmax(axis=1)
    return block_labels


def second_speakers(votes: np.ndarray, block_labels: np.ndarray, overlapped: np.ndarray, reach: int, min_blocks: int) -> np.ndarray:
    """The second speaker of each overlapped speech block (-1 elsewhere). Speakers overlap where turns change, so
    only blocks within `reach` of a change from one speaker to another count, and the second speaker is, of the
    other speakers whose windows lie within `reach`, the one with the largest vote summed over it; runs shorter
    than `min_blocks` are dropped."""
    from scipy.ndimage import binary_dilation, uniform_filter1d

    labels = np.asarray(block_labels)
    change = np.zeros(labels.size, dtype=bool)
    change[1:] = (labels[1:] != labels[:-1]) & (labels[1:] >= 0) & (labels[:-1] >= 0)
    near_change = binary_dilation(change, np.ones(2 * reach + 1, dtype=bool)) if change.any() else change
    others = uniform_filter1d(votes[: labels.size], size=2 * reach + 1, axis=0, mode="constant")
    speech = np.flatnonzero(labels >= 0)
    others[speech, labels[speech]] = 0
    second = np.where(overlapped[: labels.size] & near_change & (labels >= 0) & (others.max(axis=1) > 0), others.argmax(axis=1), -1)
    for start, stop, label in _runs(second) if len(second) else []:
        if label >= 0 and stop - start < min_blocks:
            second[start:stop] = -1
    return second


def cepstra(energies: np.ndarray, coefficients: int = RESEGMENT_CEPSTRA) -> np.ndarray:
    """Cepstral coefficients 1..`coefficients` of 10 ms filterbank energies (the frame spectrum's shape, not its
    level), float32: what resegmentation models each speaker's frames with."""
    from scipy.fft import dct

    return dct(np.log(energies), type=2, norm="ortho", axis=1)[:, 1 : coefficients + 1].astype(np.float32)


def block_cepstra(samples: np.ndarray) -> np.ndarray:
    """`cepstra` with one row per 10 ms block of `samples` (blocks past the last whole frame repeat its row;
    zeros for a chunk shorter than one frame)."""
    blocks = -(-samples.size // FRAME_STEP)
    if samples.size < FRAME_LENGTH:
        return np.zeros((blocks, RESEGMENT_CEPSTRA), np.float32)
    frames = cepstra(fbank_energies(samples))
    return frames[np.minimum(np.arange(blocks), len(frames) - 1)]


def resegment(block_labels: np.ndarray, frame_cepstra: np.ndarray, config: DiarizationConfig) -> np.ndarray:
    """Frame-level resegmentation: a diagonal Gaussian mixture per speaker on the cepstra of its turns' inner
    blocks (away from changes), then every speech block relabelled by the speakers' log-likelihoods averaged over
    `resegment_context` seconds. Boundaries move to where the spectrum says, at 10 ms, instead of where 1.5 s
    windows overlapped. A speaker with too little confident speech keeps its blocks."""
    from scipy.ndimage import binary_erosion, uniform_filter1d
    from sklearn.mixture import GaussianMixture

    speakers = [int(s) for s in np.unique(block_labels) if s >= 0]
    if len(speakers) < 2:
        return block_labels
    features = frame_cepstra[: len(block_labels)]
    speech = block_labels >= 0
    features = (features - features[speech].mean(axis=0)) / np.maximum(features[speech].std(axis=0), 1e-6)
    margin = np.ones(2 * int(round(config.min_turn / BLOCK_SECONDS)) + 1, dtype=bool)
    rng = np.random.default_rng(0)
    scores = np.full((len(block_labels), len(speakers)), -np.inf)
    for column, speaker in enumerate(speakers):
        inner = np.flatnonzero(binary_erosion(block_labels == speaker, margin))
        if inner.size < RESEGMENT_MIN_BLOCKS:
            return block_labels
        if inner.size > RESEGMENT_MAX_BLOCKS:
            inner = np.sort(rng.choice(inner, RESEGMENT_MAX_BLOCKS, replace=False))
        mixture = GaussianMixture(RESEGMENT_COMPONENTS, covariance_type="diag", reg_covar=1e-3, random_state=0).fit(features[inner])
        scores[:, column] = mixture.score_samples(features)
    smoothed = uniform_filter1d(scores, size=max(1, int(round(config.resegment_context / BLOCK_SECONDS))), axis=0, mode="nearest")
    relabelled = block_labels.copy()
    relabelled[speech] = np.array(speakers)[smoothed[speech].argmax(axis=1)]
    return relabelled


def smooth_turns(block_labels: np.ndarray, config: DiarizationConfig) -> np.ndarray:
    """The block labelling with turns under `min_turn` joined to their longer neighbour inside the same region."""
    block_labels = block_labels.copy()
    runs = _runs(block_labels) if len(block_labels) else []
    minimum = int(round(config.min_turn / BLOCK_SECONDS))
    changed = True
    while changed:
        changed = False
        for index, (start, stop, label) in enumerate(runs):
            if label < 0 or stop - start >= minimum:
                continue
            neighbours = [
                runs[i]
                for i in (index - 1, index + 1)
                if 0 <= i < len(runs) and runs[i][2] >= 0 and (runs[i][1] == start or runs[i][0] == stop)
            ]
            if neighbours:
                block_labels[start:stop] = max(neighbours, key=lambda run: run[1] - run[0])[2]
                runs, changed = _runs(block_labels), True
                break
    return block_labels


def turns(block_labels: np.ndarray, recording: str, second: np.ndarray | None = None) -> list[Segment]:
    """Each speaker's turns: runs of the blocks labelled with it, or (overlapped speech) given it as `second`
    speaker; in time order."""
    speakers = sorted(
        {int(s) for s in np.unique(block_labels) if s >= 0}
        | ({int(s) for s in np.unique(second) if s >= 0} if second is not None else set())
    )
    segments = []
    for speaker in speakers:
        active = block_labels == speaker
        if second is not None:
            active |= second[: len(active)] == speaker
        segments += [
            Segment(a * BLOCK_SECONDS, b * BLOCK_SECONDS, f"speaker_{speaker}", recording) for a, b, on in _runs(active.astype(int)) if on
        ]
    return sorted(segments, key=lambda segment: (segment.start, segment.speaker))


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, label) of each run of equal labels."""
    changes = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [len(labels)]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, ends)]


@dataclass
class Analysis:
    """What diarization keeps of a recording (block indices global): speech regions, windows and their embeddings,
    cepstra for resegmentation, overlapped-speech probabilities per block (None without a detector), and how far
    its speech stands above its noise floor (`recording_snr_db`)."""

    regions: list
    spans: list
    embeddings: np.ndarray
    cepstra: np.ndarray | None
    overlap: np.ndarray | None
    snr_db: float


def load_overlap_detector(path=None):
    """The overlapped-speech detector (`train-overlap`; None: the shipped one) as a Keras model, refused if it is
    another model."""
    from ..checkpoints import load_keras_file
    from ..errors import CheckpointError
    from ..models.overlap import OVERLAP_NAME

    path = path or DEFAULT_OVERLAP_DETECTOR
    model = load_keras_file(path)
    if model.name != OVERLAP_NAME:
        raise CheckpointError(f"{path}: not an overlap detector (model {model.name!r}); train one with `train-overlap`")
    return model


def overlap_per_block(detector, samples: np.ndarray) -> np.ndarray:
    """Probability of overlapped speech per 10 ms block of `samples` (16 kHz mono) from an overlap `detector` (the
    Keras model, or its ONNX Runtime copy: waveforms (batch, samples) -> logits per frame): block b takes the frame
    whose 25 ms window is centred in it (frame b - 1), the ends the nearest frame."""
    blocks = -(-samples.size // FRAME_STEP)
    if samples.size < FRAME_LENGTH:
        return np.zeros(blocks, np.float32)
    logits = np.asarray(detector(np.asarray(samples, np.float32)[None]))[0]
    frames = np.clip(np.arange(blocks) - 1, 0, logits.size - 1)
    return (1 / (1 + np.exp(-logits[frames].astype(np.float64)))).astype(np.float32)


def window_frames(config: DiarizationConfig) -> int:
    """A window's length in feature frames: the crop a Keras encoder embeds it as."""
    return int(round(config.window / BLOCK_SECONDS))


class Diarizer:
    """Diarize recordings with an encoder (`SpeakerEncoder` or `FusedEncoder`; the AHC threshold defaults to its
    calibrated EER threshold) and, for overlapped speech, an overlap detector (none: one speaker per instant).

    >>> segments = load_diarizer().diarize("meeting.wav")   # assembly.load_diarizer   # doctest: +SKIP
    """

    def __init__(self, encoder, config: DiarizationConfig = DiarizationConfig(), overlap_detector=None, batch_windows: int = 256):
        self.encoder, self.config, self.overlap_detector, self.batch_windows = encoder, config, overlap_detector, batch_windows

    def _threshold(self, snr_db: float = 100.0) -> float | None:
        """The AHC threshold: given, else the EER threshold calibrated on windows of this length for a recording of
        this SNR (noise makes different speakers' windows alike: `Calibration.at_snr`), else (with a warning: it
        splits speakers) the one calibrated on whole recordings."""
        if self.config.ahc_threshold is not None:
            return self.config.ahc_threshold
        from ..scoring.calibration import find_calibration

        checkpoint = getattr(self.encoder, "checkpoint", None)
        windows = find_calibration(self.encoder.fingerprint, checkpoint, seconds=self.config.window)
        if windows is not None:
            return windows.at_snr(snr_db)
        whole = find_calibration(self.encoder.fingerprint, checkpoint)
        if whole is None:
            return None
        logging.getLogger(__name__).warning(
            "model %s has no calibration for %g s windows (`calibrate --windows %g --audio-dir TRAIN`); the threshold for "
            "whole recordings, higher, may split one speaker into several",
            self.encoder.fingerprint,
            self.config.window,
            self.config.window,
        )
        return whole.eer

    def analyse(self, chunks, progress: bool = False, seconds: float | None = None) -> Analysis:
        """The `Analysis` of a recording (of `seconds`, for the progress bar) given as consecutive chunks of samples;
        only the current chunk's samples are held."""
        from tqdm import tqdm

        regions, spans, embeddings, frame_cepstra, overlap, powers, offset = [], [], [], [], [], [], 0
        with tqdm(desc="diarize", unit="s", total=None if seconds is None else round(seconds, 2), disable=not progress) as bar:
            for samples in chunks:
                local_regions = speech_regions(samples, self.config)
                local_spans = windows(local_regions, self.config)
                for first in range(0, len(local_spans), self.batch_windows):
                    batch = local_spans[first : first + self.batch_windows]
                    embeddings.append(self.encoder.embed_waveforms([samples[a * FRAME_STEP : b * FRAME_STEP] for a, b in batch]))
                if self.config.resegment:
                    frame_cepstra.append(block_cepstra(samples))
                if self.overlap_detector is not None:
                    overlap.append(overlap_per_block(self.overlap_detector, samples))
                powers.append(block_powers(samples))
                regions += [(a + offset, b + offset) for a, b in local_regions]
                spans += [(a + offset, b + offset) for a, b in local_spans]
                offset += -(-samples.size // FRAME_STEP)  # 10 ms blocks in this chunk
                bar.update(round(samples.size / SAMPLE_RATE, 2))
        vectors = np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32)
        snr_db = recording_snr_db(np.concatenate(powers), regions) if powers else -20.0
        return Analysis(
            regions,
            spans,
            vectors,
            np.concatenate(frame_cepstra) if frame_cepstra else None,
            np.concatenate(overlap) if overlap else None,
            snr_db,
        )

    def segments(self, analysis: Analysis, recording: str) -> list[Segment]:
        """The turns of an analysed recording under this diarizer's configuration (clustering, count, overlap)."""
        if not analysis.spans:
            return []
        end = max(b for _, b in analysis.regions)
        votes = window_votes(analysis.spans, cluster(analysis.embeddings, self.config, self._threshold(analysis.snr_db)), end)
        block_labels = vote(votes, analysis.regions)
        if self.config.resegment:
            block_labels = resegment(block_labels, analysis.cepstra, self.config)
        block_labels = smooth_turns(block_labels, self.config)
        second = None
        if analysis.overlap is not None and not self.config.exclusive:
            reach = int(round(self.config.window / BLOCK_SECONDS))
            second = second_speakers(votes, block_labels, analysis.overlap >= self.config.overlap_threshold, reach, MIN_OVERLAP_BLOCKS)
        return turns(block_labels, recording, second)

    def diarize_waveform(self, samples: np.ndarray, recording: str = "recording", progress: bool = False) -> list[Segment]:
        """Turns of a 16 kHz mono waveform."""
        return self.segments(self.analyse([np.asarray(samples, np.float32)], progress), recording)

    def diarize(self, path, progress: bool = False) -> list[Segment]:
        """Turns of an audio file of any length (named in the segments by its stem), read `CHUNK_SECONDS` at a time."""
        from pathlib import Path

        from ..audio import MAX_STREAM_SECONDS, require_readable, stream_audio

        seconds = require_readable(path, MAX_STREAM_SECONDS)
        return self.segments(self.analyse(stream_audio(path, CHUNK_SECONDS), progress, seconds), Path(path).stem)


WINDOW_CALIBRATION_FLOORS_DB = (49.0, 39.0, 29.0)  # noise RMS this far under each recording's peak
WINDOW_CALIBRATION_NOISES = ("white", "pink", "babble")


def calibrate_windows(
    diarizer: Diarizer,
    recordings,
    speakers,
    per_recording: int = 2,
    seed: int = 0,
    progress: bool = False,
    source: str = "",
    floors_below_peak=WINDOW_CALIBRATION_FLOORS_DB,
    noisy_recordings: int = 800,
):
    """A `Calibration` of `diarizer`'s encoder on windows of its length (what its clustering compares): up to
    `per_recording` windows of each recording (of training speakers, never those it will be evaluated on), scored
    pairwise across recordings; same-speaker pairs are the targets. Then `snr_thresholds`: for each floor, the same
    on `noisy_recordings` of them under white noise, pink noise and babble (of other recordings) that far under each
    recording's peak, one kind at a time (in a recording every window hears the same noise, which is what makes
    different speakers' windows alike), the mean of the three EER thresholds at the median SNR diarization measures
    there (`recording_snr_db`). `source` names the corpus in the record. Each condition's result is kept in the
    model's home until the whole calibration is done, so an interrupted run resumes after the last one finished."""
    from tqdm import tqdm

    from ..audio import read_audio
    from ..data.conversations import NoiseSources
    from ..scoring.calibration import Calibration

    recordings, speakers = list(recordings), np.array(speakers)
    if len(set(speakers.tolist())) < 2:
        raise ConfigError("calibrating windows needs recordings of at least two speakers")
    rng = np.random.default_rng(seed)
    babble = NoiseSources(talkers=[read_audio(recordings[i]) for i in rng.choice(len(recordings), min(20, len(recordings)), replace=False)])
    noisy = np.sort(rng.choice(len(recordings), min(noisy_recordings, len(recordings)), replace=False))
    conditions = [(None, None, np.arange(len(recordings)))] + [
        (floor, kind, noisy) for floor in floors_below_peak for kind in WINDOW_CALIBRATION_NOISES
    ]
    plan = (diarizer.encoder.fingerprint, asdict(diarizer.config), [str(r) for r in recordings], speakers.tolist(), per_recording, seed)
    finished = user_home(diarizer.encoder.fingerprint) / "window_calibration" / hashlib.sha256(repr(plan).encode()).hexdigest()[:16]
    results = []
    with tqdm(total=sum(len(chosen) for _, _, chosen in conditions), desc="windows", unit="file", disable=not progress) as bar:
        for number, (floor, kind, chosen) in enumerate(conditions):
            done = finished / f"{number}.json"  # a condition measured before an interruption is not measured again
            if done.is_file():
                record = json.loads(done.read_text())
                results.append((floor, record["snr_db"], Calibration(**record["calibration"])))
                bar.update(len(chosen))
                continue
            snrs, calibration = _noisy_windows(
                diarizer,
                [recordings[i] for i in chosen],
                speakers[chosen],
                per_recording,
                np.random.default_rng([seed, number]),
                floor,
                kind,
                babble,
                source,
                bar,
            )
            results.append((floor, float(np.median(snrs)), calibration))
            atomic_write_bytes(done, json.dumps({"snr_db": results[-1][1], "calibration": asdict(calibration)}).encode())
    shutil.rmtree(finished, ignore_errors=True)
    clean = results[0][2]
    table = [[round(results[0][1], 2), clean.eer]]
    for floor in floors_below_peak:
        rows = [(snr, calibration.eer) for at, snr, calibration in results if at == floor]
        table.append([round(float(np.median([snr for snr, _ in rows])), 2), float(np.mean([eer for _, eer in rows]))])
    return replace(clean, snr_thresholds=table)


def _noisy_windows(diarizer: Diarizer, recordings, speakers, per_recording, rng, floor, kind, babble, source, bar):
    """The SNR of each recording (under the noise `kind` `floor` dB below its peak; None: as recorded) and the
    calibration of `per_recording` windows of each."""
    from ..audio import read_audio
    from ..data.conversations import in_noise

    samples, labels, origins, snrs = [], [], [], []
    for index, (path, speaker) in enumerate(zip(recordings, speakers)):
        waveform = read_audio(path)
        if floor is not None:
            peak_dbfs = 20 * np.log10(max(float(np.abs(waveform).max()), 1e-9))
            waveform = in_noise(waveform, rng, kind, peak_dbfs - floor, None, babble)
        regions = speech_regions(waveform, diarizer.config)
        spans = windows(regions, diarizer.config)
        snrs.append(recording_snr_db(block_powers(waveform), regions))
        for pick in rng.permutation(len(spans))[:per_recording]:
            start, stop = spans[pick]
            samples.append(waveform[start * FRAME_STEP : stop * FRAME_STEP])
            labels.append(speaker)
            origins.append(index)
        bar.update()
    condition = "as recorded" if floor is None else f"{kind} noise {floor:g} dB under the peak"
    return snrs, _window_calibration(diarizer, samples, np.array(labels), np.array(origins), source, condition)


def _window_calibration(diarizer: Diarizer, samples, labels: np.ndarray, origins: np.ndarray, source: str, condition: str):
    """The calibration of windows scored pairwise across recordings (windows of one recording may overlap: never a trial)."""
    from ..scoring.calibration import Calibration

    embeddings = diarizer.encoder.embed_waveforms(samples)
    first, second = np.triu_indices(len(samples), 1)
    keep = origins[first] != origins[second]
    first, second = first[keep], second[keep]
    scores = (embeddings @ embeddings.T)[first, second]
    same = labels[first] == labels[second]
    trials = f"{len(samples)} windows of {diarizer.config.window:g} s from {len(set(origins.tolist()))} recordings of {len(set(labels.tolist()))} speakers, {condition}"
    return Calibration.from_scores(
        scores[same],
        scores[~same],
        trials=f"{source}: {trials}" if source else trials,
        model=diarizer.encoder.fingerprint,
        seconds=diarizer.config.window,
    )
