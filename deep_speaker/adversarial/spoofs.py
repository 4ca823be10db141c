"""A spoof corpus for training and testing the detector: genuine recordings and their attacked and converted versions.

    OUT/<family>/<speaker>/<stem>.flac   one spoof per chosen recording and family
    OUT/manifest.csv                     path, speaker, family ('genuine' for the untouched originals)

Families: `fgsm`, `bim`, `pgd` (targeted white-box attacks toward another training speaker, SNR drawn from 20-40
dB), `nes` (score-only), `world` (signal-processing voice conversion toward another speaker), `again` (AGAIN-VC
voice conversion toward another speaker: needs a `train-again` converter). Every spoof is seeded by its recording
and family, written atomically, and skipped when it exists, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np

from ..audio import read_audio, write_audio
from ..errors import ConfigError, DeepSpeakerError
from ..fileio import atomic_write_csv

ATTACK_FAMILIES = ("fgsm", "bim", "pgd", "nes")
FAMILIES = (*ATTACK_FAMILIES, "world", "again")
MANIFEST = "manifest.csv"
GENUINE = "genuine"


def _seed(path: Path, family: str) -> int:
    return zlib.crc32(f"{path.parent.name}/{path.name}/{family}".encode())


def make_spoof(family: str, source: Path, target: Path, encoder, threshold: float, converter=None, attack=None) -> np.ndarray:
    """One spoof of `source` toward `target`'s speaker (`converter`: the AGAIN-VC model, for `again`; `attack`: an
    `adversarial.attack_recording` with its gradient engine, as `assembly.attack`, for the attack families)."""
    from . import AttackConfig, as_written
    from .conversion import again_convert, world_convert

    rng = np.random.default_rng(_seed(source, family))
    if family == "world":
        return as_written(world_convert(read_audio(source), read_audio(target)))
    if family == "again":
        return as_written(again_convert(converter, read_audio(source), read_audio(target), seed=int(rng.integers(1 << 31))))
    options = {"nes_samples": 10, "steps": 10} if family == "nes" else {"steps": 20}
    config = AttackConfig(method=family, snr_db=float(rng.uniform(20, 40)), seed=int(rng.integers(1 << 31)), **options)
    if attack is None:
        raise ConfigError(f"the {family} family attacks the verifier: give attack (assembly.attack)")
    _, result = attack(encoder, source, encoder.embed(target), threshold, True, config)
    return result.waveform


def build_spoof_corpus(
    recordings,
    out_dir,
    encoder,
    threshold: float,
    families=FAMILIES,
    per_family: int = 100,
    seed: int = 0,
    progress: bool = True,
    converter=None,
    attack=None,
) -> Path:
    """Spoofs of `per_family` recordings (from `recordings`: (path, speaker) pairs) per family, each toward a random
    other speaker's recording; returns the manifest (genuine rows: every recording given). `again` needs the
    AGAIN-VC `converter`, the attack families `attack` (`make_spoof`)."""
    from tqdm import tqdm

    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"unknown spoof families {unknown}; choose from {FAMILIES}")
    if "again" in families and converter is None:
        raise ConfigError("the again family needs an AGAIN-VC converter (train-again; make-spoofs --converter)")
    attacks = sorted(set(families) & set(ATTACK_FAMILIES))
    if attacks and attack is None:
        raise ConfigError(f"spoof families {attacks} attack the verifier: give attack (assembly.attack)")
    out_dir = Path(out_dir)
    recordings = [(Path(p), s) for p, s in recordings]
    speakers = sorted({s for _, s in recordings})
    if len(speakers) < 2:
        raise ConfigError("spoofs are made toward other speakers: give recordings of at least two speakers")
    rng = np.random.default_rng(seed)
    rows = [(str(path), speaker, GENUINE) for path, speaker in recordings]
    failures = []
    for family in families:
        chosen = rng.choice(len(recordings), size=min(per_family, len(recordings)), replace=False)
        for index in tqdm(chosen, desc=family, disable=not progress, unit="file"):
            source, speaker = recordings[index]
            others = [i for i, (_, s) in enumerate(recordings) if s != speaker]
            target = recordings[others[rng.integers(len(others))]][0]
            path = out_dir / family / speaker / f"{source.stem}.flac"
            if not path.is_file():
                try:
                    write_audio(path, make_spoof(family, source, target, encoder, threshold, converter, attack))
                except DeepSpeakerError as error:  # a recording too short or unvoiced for this family: listed, skipped
                    failures.append((str(source), family, str(error)))
                    continue
            rows.append((str(path), speaker, family))
    atomic_write_csv(out_dir / MANIFEST, ["path", "speaker", "family"], rows)
    if failures:
        atomic_write_csv(out_dir / "failures.csv", ["path", "family", "error"], failures)
    return out_dir / MANIFEST


def read_manifest(path) -> list[tuple[str, str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no spoof manifest (build one with `make-spoofs`)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or set(rows[0]) != {"path", "speaker", "family"}:
        raise ConfigError(f"{path}: not a spoof manifest (columns path, speaker, family)")
    return [(row["path"], row["speaker"], row["family"]) for row in rows]
