"""Score fusion of speaker models that need different inputs (e.g. GE2E and our ECAPA-TDNN).

Each member embeds a recording with its own trimming and front end. The fused embedding is the members'
unit embeddings side by side, member i scaled by sqrt(w_i / sigma_i), where sigma_i is the spread of its
impostor scores on training speakers: the cosine of two fused embeddings is then a weighted sum of the
members' z-normalised cosines (up to a constant), so scores on different scales fuse fairly. A `FusedEncoder` keeps
the `embedding.Encoder` contract, so everything that takes an encoder (Verifier, SpeakerRegistry, eval-trials,
calibrate, identify) takes it as is.
(Models with the same front end can instead be fused into one graph: `models.ensemble`.)

A fusion is a small JSON file, `NAME.fusion.json`, naming its members' checkpoints (relative to the file),
their weights and impostor spreads; `fit_fusion` measures the spreads and writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, Recording, result_or_refusal
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes
from .scoring.metrics import compute_eer

FUSION_SUFFIX = ".fusion.json"
DEFAULT_SYSTEM = Path(__file__).resolve().parent / "pretrained" / f"default{FUSION_SUFFIX}"  # what commands use by default
FORMAT = "deep-speaker-score-fusion"
MAX_FIT_RECORDINGS = 3000  # impostor spread from at most this many recordings (4.5 M pairs)
MAX_WEIGHT = 1e6  # a member's weight, relative to the others
IMPOSTOR_STD_RANGE = (1e-4, 2.0)  # a spread of cosine scores (in [-1, 1]) outside this is no measurement
DECODE_BLOCK = 64  # recordings decoded at a time for all members (about 80 MB of 20 s recordings)


@dataclass(frozen=True)
class FusionMember:
    checkpoint: str  # relative to the fusion file
    weight: float
    impostor_std: float


def read_fusion(path) -> list[FusionMember]:
    """The members of a fusion file; anything malformed (a field missing, unknown or out of range) is one
    `CheckpointError` naming the file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        if set(document) != {"format", "members"} or not isinstance(document["members"], list):
            raise ValueError(f"a fusion holds exactly 'format' and a list of 'members', found {sorted(document)}")
        members = []
        for member in document["members"]:
            if not isinstance(member, dict) or set(member) != set(FusionMember.__dataclass_fields__):
                raise ValueError(f"a member holds exactly {sorted(FusionMember.__dataclass_fields__)}, found {member!r}")
            if not isinstance(member["checkpoint"], str) or any(isinstance(member[k], bool) for k in ("weight", "impostor_std")):
                raise ValueError(f"malformed member {member!r}")
            members.append(FusionMember(member["checkpoint"], float(member["weight"]), float(member["impostor_std"])))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable score-fusion file ({error})") from error
    if len(members) < 2:
        raise CheckpointError(f"{path}: a fusion needs two or more members, found {len(members)}")
    low, high = IMPOSTOR_STD_RANGE
    for member in members:
        if not (0 < member.weight <= MAX_WEIGHT and low <= member.impostor_std <= high):  # NaN fails too
            raise CheckpointError(
                f"{path}: member {member.checkpoint}: weight must be in (0, {MAX_WEIGHT:g}] and impostor_std in "
                f"[{low:g}, {high:g}], got {member.weight!r} and {member.impostor_std!r}"
            )
    return members


class FusedEncoder:
    """Several speaker encoders as one (see the module docstring): `members` are the encoders of the fusion file
    `path`'s members, in its order (`assembly.load_encoder` opens them). A recording is decoded once for all of them.

    >>> encoder = load_encoder("deep_speaker/pretrained/default.fusion.json")   # doctest: +SKIP
    >>> encoder.embed("a.wav").shape                                           # doctest: +SKIP
    (448,)
    """

    def __init__(self, path, members: list):
        self.checkpoint = Path(path)
        spec = read_fusion(self.checkpoint)
        if len(members) != len(spec):
            raise ConfigError(f"{self.checkpoint}: names {len(spec)} members, {len(members)} encoders were given")
        self.members = list(members)
        shares = np.array([m.weight / m.impostor_std for m in spec])
        self.scales = np.sqrt(shares / shares.sum()).astype(np.float32)
        identity = json.dumps([[encoder.fingerprint, round(float(s), 6)] for encoder, s in zip(self.members, self.scales)])
        self.fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.embedding_dim = sum(encoder.embedding_dim for encoder in self.members)

    @property
    def parts(self) -> list:
        return [(part, float(scale) * part_scale) for member, scale in zip(self.members, self.scales) for part, part_scale in member.parts]

    def join(self, parts: list[np.ndarray]) -> np.ndarray:
        """The fused embeddings from each member's embeddings of the same recordings (in member order)."""
        return np.concatenate([part * scale for part, scale in zip(parts, self.scales)], axis=-1).astype(np.float32)

    def embed(self, source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The fused unit embedding of one file, waveform or `Recording`."""
        recording = Recording.of(source, sample_rate)
        return self.join([encoder.embed(recording) for encoder in self.members])

    def embed_waveforms(self, waveforms, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        recordings = [Recording.of(waveform, sample_rate) for waveform in waveforms]
        return self.join([encoder.embed_many(recordings) for encoder in self.members])

    def embed_many(self, sources, progress: bool = False, workers: int = 2, refused: dict | None = None) -> np.ndarray:
        """As `SpeakerEncoder.embed_many`, each file decoded once for all members (`DECODE_BLOCK` at a time); a file
        any member refuses is refused (a NaN row)."""
        sources = list(sources)
        rows = []
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(sources), disable=not progress, unit="utt", desc=f"embed {self.checkpoint.name}") as bar,
        ):
            for start in range(0, len(sources), DECODE_BLOCK):
                block = sources[start : start + DECODE_BLOCK]
                decoded = list(pool.map(partial(result_or_refusal, Recording.of, keep_refusals=refused is not None), block))
                usable = [item for item in decoded if isinstance(item, Recording)]
                fused = np.full((len(block), self.embedding_dim), np.nan, np.float32)
                if usable:
                    fused[[isinstance(item, Recording) for item in decoded]] = self.join(
                        [m.embed_many(usable, False, workers, refused) for m in self.members]
                    )
                for source, item in zip(block, decoded):
                    if not isinstance(item, Recording):
                        refused[str(source)] = str(item)
                rows.append(fused)
                bar.update(len(block))
        return np.concatenate(rows) if rows else np.zeros((0, self.embedding_dim), np.float32)


def impostor_std(embeddings: np.ndarray, labels: np.ndarray, seed: int = 123) -> float:
    """Standard deviation of the cosine scores between recordings of different speakers."""
    if len(embeddings) > MAX_FIT_RECORDINGS:
        keep = np.random.default_rng(seed).choice(len(embeddings), MAX_FIT_RECORDINGS, replace=False)
        embeddings, labels = embeddings[keep], labels[keep]
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    scores = unit @ unit.T
    impostors = np.triu(labels[:, None] != labels[None, :], 1)
    if not impostors.any():
        raise ConfigError("the fusion's training recordings need at least two speakers")
    return float(scores[impostors].std())


def checked_plan(checkpoints, target, weights=None) -> tuple[Path, list[float]]:
    """(target, weights) of a fusion to write, refused before any model runs: a `*.fusion.json` name, two or more
    models, one weight in (0, MAX_WEIGHT] each (default equal)."""
    target = Path(target)
    if not target.name.endswith(FUSION_SUFFIX):
        raise ConfigError(f"{target}: a score-fusion file is named *{FUSION_SUFFIX}")
    weights = [1.0] * len(checkpoints) if weights is None else [float(w) for w in weights]
    if len(checkpoints) < 2 or len(weights) != len(checkpoints) or not all(0 < w <= MAX_WEIGHT for w in weights):
        raise ConfigError(
            f"a fusion takes two or more models with one weight in (0, {MAX_WEIGHT:g}] each, got {len(checkpoints)} models and weights {weights}"
        )
    return target, weights


def impostor_spreads(checkpoints, member_embeddings, labels) -> list[float]:
    """Each model's impostor-score spread on `member_embeddings` (one array per model) of training speakers `labels`;
    a model whose scores barely spread is refused."""
    spreads = [impostor_std(embeddings, np.asarray(labels)) for embeddings in member_embeddings]
    for checkpoint, spread in zip(checkpoints, spreads):
        if not IMPOSTOR_STD_RANGE[0] <= spread <= IMPOSTOR_STD_RANGE[1]:
            raise ConfigError(f"{checkpoint}: its impostor scores spread by {spread:.2e}: it does not tell these speakers apart")
    return spreads


def fit_fusion(checkpoints, member_embeddings, labels, target, weights=None) -> Path:
    """Write `target` (`*.fusion.json`): the models `checkpoints`, weighted by `weights` (default equal), each
    with its impostor-score spread on `member_embeddings` (one array per model) of recordings of training speakers
    `labels`."""
    target, weights = checked_plan(checkpoints, target, weights)
    spreads = impostor_spreads(checkpoints, member_embeddings, labels)
    members = [
        FusionMember(os.path.relpath(Path(checkpoint).resolve(), target.resolve().parent), weight, spread)
        for checkpoint, weight, spread in zip(checkpoints, weights, spreads)
    ]
    atomic_write_bytes(target, json.dumps({"format": FORMAT, "members": [asdict(m) for m in members]}, indent=2).encode())
    return target


def _checked_domains(domains: dict) -> dict:
    checked = {}
    for name, (scores, labels) in domains.items():
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        if scores.ndim != 2 or scores.shape[0] != labels.size or not np.all(np.isfinite(scores)):
            raise ConfigError(f"domain {name}: expected finite scores of shape (trials, members) and one label per trial")
        if not (np.any(labels == 1) and np.any(labels == 0)):
            raise ConfigError(f"domain {name}: fitting fusion weights needs both target and non-target trials")
        checked[name] = (scores, labels)
    if len({scores.shape[1] for scores, _ in checked.values()}) != 1:
        raise ConfigError("every domain needs the scores of the same members")
    return checked


def fit_weights(domains: dict) -> np.ndarray:
    """Fusion weights (summing to 1) fitted on labelled trials of several domains: logistic regression over the
    members' z-normalised scores (the linear fusion of FoCal / BOSARIS) with one offset per domain, so that a corpus
    that shifts every score (shared language, channel, words) moves its offset and not the weights; each domain and
    each class of trials counts equally, however many trials it has. `domains`: name -> (z-scores of shape
    (trials, members), labels 1 = same speaker). A member the fit gives no positive weight is refused: it adds
    nothing on these domains, so leave it out of the fusion."""
    from sklearn.linear_model import LogisticRegression  # here: the command line imports this module to parse

    domains = _checked_domains(domains)
    if not domains:
        raise ConfigError("fitting fusion weights needs labelled trials of at least one domain")
    offsets = np.eye(len(domains))
    inputs = np.concatenate([np.hstack([s, np.tile(offsets[k], (len(y), 1))]) for k, (s, y) in enumerate(domains.values())])
    labels = np.concatenate([y for _, y in domains.values()])
    balance = np.concatenate([np.where(y == 1, 1 / np.sum(y == 1), 1 / np.sum(y == 0)) for _, y in domains.values()])
    model = LogisticRegression(C=1e4, fit_intercept=False, max_iter=1000)
    model.fit(inputs, labels, sample_weight=balance * labels.size / balance.sum())
    slopes = model.coef_[0][: inputs.shape[1] - len(domains)]
    if np.any(slopes <= 0):
        useless = ", ".join(str(i + 1) for i in np.flatnonzero(slopes <= 0))
        raise ConfigError(f"on domains {', '.join(domains)} member(s) {useless} get no positive weight: fuse without them")
    return slopes / slopes.sum()


def leave_one_domain_out(domains: dict) -> dict:
    """For each domain: the weights `fit_weights` gives on the other domains, and on this held-out domain the EER of
    the fusion with them, of the equal-weight fusion and of each member alone (the check that a fusion chosen
    elsewhere does not lose to its best member here)."""
    domains = _checked_domains(domains)
    if len(domains) < 2:
        raise ConfigError("leaving one domain out needs labelled trials of at least two domains")

    def eer(scores, labels) -> float:
        return float(compute_eer(scores[labels == 1], scores[labels == 0])[0])

    report = {}
    for held, (scores, labels) in domains.items():
        weights = fit_weights({name: domain for name, domain in domains.items() if name != held})
        report[held] = {
            "weights": weights.tolist(),
            "eer": eer(scores @ weights, labels),
            "equal_weights_eer": eer(scores.mean(axis=1), labels),
            "member_eers": [eer(member, labels) for member in scores.T],
        }
    return report
