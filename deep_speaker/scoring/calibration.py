"""Operating points: decision thresholds on scores, calibrated on a development trial list.

A calibration belongs to a model's identity (`models.model_fingerprint`), not to a file name, so
re-saving, copying or converting a checkpoint keeps it. It is stored as JSON in the model's home
(`model_home`: `calibration[.<scorer>][.<seconds>s].json`) and beside the checkpoint as
`<checkpoint>.calibration.json`, which travels with the file; the shipped models' calibrations live in their
shipped homes and are only replaced on purpose (`force`). A calibration needs enough trials to mean
anything, and the one it replaces is kept as a dated backup.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from ..fileio import atomic_write_bytes, toolkit_home
from ..model_home import find, user_home
from .metrics import compute_eer, threshold_at_false_accept_rate

OPERATING_POINTS = ("eer", "far1", "far0.1")
SUFFIX = ".calibration.json"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
MIN_TARGET_TRIALS = 50  # the EER threshold sits between target scores: fewer leave it to chance
MIN_NONTARGET_TRIALS = 1000  # far0.1 is the score of the 1-in-1000 highest impostor: it needs 1000 of them
MAX_SCORE_MAGNITUDE = 1e6  # thresholds: cosine scores lie in [-1, 1], back ends' (PLDA LLRs) within a few hundred
MAX_LLR_PARAMETER = 1e4  # a fitted score-to-LLR slope or offset beyond this is no calibration


@dataclass(frozen=True)
class Calibration:
    """Thresholds at the EER and at false-accept rates of 1 % and 0.1 %, for the model `model` (fingerprint)."""

    eer: float
    far1: float
    far0_1: float
    eer_percent: float
    trials: str
    model: str = ""
    scorer: str = "cosine"
    llr_scale: float | None = None  # log-likelihood ratio = llr_scale * score + llr_offset (logistic regression)
    llr_offset: float | None = None
    seconds: float | None = None  # calibrated on windows of this length (diarization); None: whole recordings
    snr_thresholds: list | None = None  # windows: [[recording SNR in dB, EER threshold], ...] under noise floors

    def at_snr(self, snr_db: float) -> float:
        """The EER threshold for a recording of this signal-to-noise ratio: interpolated in the `snr_thresholds`
        table (the ends held beyond it); `eer` without a table."""
        if not self.snr_thresholds:
            return self.eer
        table = sorted(self.snr_thresholds)
        return float(np.interp(snr_db, [snr for snr, _ in table], [threshold for _, threshold in table]))

    @classmethod
    def from_scores(
        cls, target_scores, nontarget_scores, trials: str = "", model: str = "", scorer: str = "cosine", seconds: float | None = None
    ) -> Calibration:
        """Thresholds from scores; refuses lists too small to place them (see MIN_TARGET_TRIALS, MIN_NONTARGET_TRIALS)."""
        targets, nontargets = len(target_scores), len(nontarget_scores)
        if targets < MIN_TARGET_TRIALS or nontargets < MIN_NONTARGET_TRIALS:
            raise CalibrationError(
                f"{trials or 'calibration'}: {targets} target and {nontargets} non-target trials; calibration needs at least "
                f"{MIN_TARGET_TRIALS} and {MIN_NONTARGET_TRIALS}: the 0.1 % false-accept threshold is the highest of 1000 "
                "impostor scores, and a handful of target scores leaves the EER threshold to chance"
            )
        eer, threshold = compute_eer(target_scores, nontarget_scores)
        llr_scale, llr_offset = fit_llr(target_scores, nontarget_scores)
        return cls(
            eer=threshold,
            far1=threshold_at_false_accept_rate(nontarget_scores, 0.01),
            far0_1=threshold_at_false_accept_rate(nontarget_scores, 0.001),
            eer_percent=100 * eer,
            trials=trials,
            model=model,
            scorer=scorer,
            llr_scale=llr_scale,
            llr_offset=llr_offset,
            seconds=seconds,
        )

    @classmethod
    def read(cls, path) -> Calibration:
        """Parse a calibration file; anything malformed (not JSON, a field missing, unknown or of the wrong type, a
        number not finite or out of range) raises `CalibrationError` naming the file."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
            if not isinstance(values, dict):
                raise ValueError(f"a JSON object is expected, found {type(values).__name__}")
            unknown = sorted(set(values) - {f.name for f in fields(cls)})
            if unknown:
                raise ValueError(f"unknown field(s) {unknown}")
            calibration = cls(**values)
            for name in ("eer", "far1", "far0_1", "eer_percent"):
                _require_number(name, getattr(calibration, name), MAX_SCORE_MAGNITUDE if name != "eer_percent" else 100.0)
            for name in ("trials", "model", "scorer"):
                if not isinstance(getattr(calibration, name), str):
                    raise ValueError(f"{name} must be text, got {getattr(calibration, name)!r}")
            if calibration.seconds is not None:
                _require_number("seconds", calibration.seconds, 600.0)
            if calibration.snr_thresholds is not None:
                if not isinstance(calibration.snr_thresholds, list) or not all(
                    isinstance(row, list) and len(row) == 2 for row in calibration.snr_thresholds
                ):
                    raise ValueError(f"snr_thresholds must be a list of [snr_db, threshold] pairs, got {calibration.snr_thresholds!r}")
                for snr, threshold in calibration.snr_thresholds:
                    _require_number("an SNR of snr_thresholds", snr, 1000.0)
                    _require_number("a threshold of snr_thresholds", threshold, MAX_SCORE_MAGNITUDE)
            llr = (calibration.llr_scale, calibration.llr_offset)
            if llr != (None, None):
                for name, value in zip(("llr_scale", "llr_offset"), llr):
                    _require_number(name, value, MAX_LLR_PARAMETER)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as error:
            raise CalibrationError(f"{path}: not a readable calibration file ({error})") from error
        return calibration

    def llr(self, score: float) -> float | None:
        """The calibrated log-likelihood ratio of a score (natural log; None in files calibrated before LLRs)."""
        if self.llr_scale is None or self.llr_offset is None:
            return None
        return self.llr_scale * float(score) + self.llr_offset

    def threshold(self, operating_point: str) -> float:
        if operating_point not in OPERATING_POINTS:
            raise CalibrationError(f"unknown operating point {operating_point!r}; choose from {OPERATING_POINTS}")
        return {"eer": self.eer, "far1": self.far1, "far0.1": self.far0_1}[operating_point]


def _require_number(name: str, value, bound: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= bound:
        raise ValueError(f"{name} must be a finite number of magnitude at most {bound:g}, got {value!r}")


def fit_llr(target_scores, nontarget_scores) -> tuple[float, float]:
    """Linear score-to-LLR map by logistic regression with the two classes weighted equally (prior 0.5),
    so its log-odds are log-likelihood ratios (as in BOSARIS / Brummer's linear calibration)."""
    from sklearn.linear_model import LogisticRegression  # here: the command line imports this module to parse

    scores = np.concatenate([target_scores, nontarget_scores]).astype(np.float64)[:, None]
    labels = np.concatenate([np.ones(len(target_scores)), np.zeros(len(nontarget_scores))])
    model = LogisticRegression(C=1e6, class_weight="balanced").fit(scores, labels)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def probability(llr: float, prior: float = 0.5) -> float:
    """P(same speaker) for a calibrated LLR and a prior probability of a target trial."""
    if not 0 < prior < 1:
        raise CalibrationError(f"a prior must be in (0, 1), got {prior!r}")
    log_odds = llr + math.log(prior / (1 - prior))
    return 1 / (1 + math.exp(-log_odds)) if log_odds > -700 else 0.0


def _variant(scorer: str, seconds: float | None) -> str:
    """The file-name part of a calibration's back end and window length ('' for cosine on whole recordings)."""
    return ("" if scorer == "cosine" else f".{scorer}") + ("" if seconds is None else f".{seconds:g}s")


def beside(checkpoint, scorer: str = "cosine", seconds: float | None = None) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.name}{_variant(scorer, seconds)}{SUFFIX}")


def _home_name(scorer: str, seconds: float | None = None) -> str:
    """The calibration's file name in its model's home."""
    return f"calibration{_variant(scorer, seconds)}.json"


def _before_homes(fingerprint: str, scorer: str, seconds: float | None = None) -> Path:
    """Where the user's calibrations were kept before model homes (moved into the home when found)."""
    return toolkit_home() / "calibration" / f"{fingerprint}{_variant(scorer, seconds)}.json"


def find_calibration(fingerprint: str, checkpoint=None, scorer: str = "cosine", seconds: float | None = None) -> Calibration | None:
    """The calibration of the model `fingerprint` for the back end `scorer` (on windows of `seconds`, or whole
    recordings): the user's (by fingerprint), beside `checkpoint`, or shipped (`locate_calibration` says which file)."""
    found = locate_calibration(fingerprint, checkpoint, scorer, seconds)
    return None if found is None else found[1]


def locate_calibration(
    fingerprint: str, checkpoint=None, scorer: str = "cosine", seconds: float | None = None
) -> tuple[Path, Calibration] | None:
    """(file, calibration) in effect for the model `fingerprint`, back end `scorer` and window length `seconds`, or None.

    A file beside the checkpoint that names other weights is ignored (it is stale); one that names none
    (written before calibrations were keyed) is taken, as it sits beside its model.
    """
    candidates = [find(fingerprint, _home_name(scorer, seconds), _before_homes(fingerprint, scorer, seconds))]
    candidates += [beside(checkpoint, scorer, seconds)] if checkpoint is not None else []
    for path in candidates:
        if path is not None and path.is_file():
            calibration = Calibration.read(path)
            unkeyed_beside = not calibration.model and checkpoint is not None and path == beside(checkpoint, scorer, seconds)
            if (calibration.model == fingerprint or unkeyed_beside) and calibration.scorer == scorer and calibration.seconds == seconds:
                return path, calibration
    return None


def require_uncalibrated(fingerprint: str, checkpoint=None, scorer: str = "cosine", seconds: float | None = None) -> None:
    """Refuse (before any work) to calibrate a model that has a calibration for `scorer` (and `seconds`) already,
    unless forced."""
    existing = locate_calibration(fingerprint, checkpoint, scorer, seconds)
    if existing is not None:
        what = f"{scorer} scores" + ("" if seconds is None else f" of {seconds:g} s windows")
        raise CalibrationError(
            f"model {fingerprint} already has a calibration for {what} ({existing[0]}, from "
            f"{existing[1].trials or 'an unnamed list'}); replacing it changes every later decision: pass force=True to replace it",
            cli_hint="pass --force; the one replaced is kept as a dated .bak",
        )


def _is_shipped(path: Path) -> bool:
    return path.resolve().parent == PRETRAINED_DIR


def _back_up(path: Path) -> None:
    """Keep the calibration about to be replaced as `<file>.<date-time>.bak`."""
    if path.is_file():
        path.rename(path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak"))


def save_calibration(calibration: Calibration, checkpoint=None, force: bool = False) -> list[Path]:
    """Store in the model's home (the user's), and beside `checkpoint` when given; each file
    replaced is backed up. A model that already has a calibration for this back end (its own, the user's, or the
    shipped one) keeps it unless `force`: a new one would silently change every later decision."""
    if not calibration.model:
        raise CalibrationError("a calibration to save must name its model (fingerprint)")
    if not force:
        require_uncalibrated(calibration.model, checkpoint, calibration.scorer, calibration.seconds)
    data = json.dumps(asdict(calibration), indent=2).encode()
    paths = [user_home(calibration.model) / _home_name(calibration.scorer, calibration.seconds)]
    shipped_beside = checkpoint is not None and _is_shipped(beside(checkpoint, calibration.scorer, calibration.seconds))
    if checkpoint is not None and (force or not shipped_beside):
        paths.append(beside(checkpoint, calibration.scorer, calibration.seconds))
    for path in paths:
        _back_up(path)
        atomic_write_bytes(path, data)
    return paths
