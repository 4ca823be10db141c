"""Find utterances and their speaker labels in the corpus layouts users have.

Accepted sources:
- a folder with one sub-folder per speaker, audio at any depth below it
  (VoxCeleb, CN-Celeb, speechocean762; LibriSpeech's `spk/chapter/spk-chapter-utt.flac` is the same rule);
- a Kaldi data folder (or its `wav.scp`) with `utt2spk` beside it;
- a CSV manifest with columns `path,speaker` (header optional, relative paths are relative to the CSV).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..audio import SUPPORTED_EXTENSIONS
from ..errors import DatasetError


@dataclass(frozen=True)
class Utterance:
    """One recording: a unique id, its speaker label and where the audio is."""

    utterance_id: str
    speaker: str
    path: Path


def _utterance_id(path: Path, root: Path) -> str:
    """Path below `root` without extension (unique within a corpus); absolute paths outside it stay whole."""
    try:
        path = path.relative_to(root)
    except ValueError:
        pass
    return path.with_suffix("").as_posix()


def _from_speaker_folders(root: Path) -> list[Utterance]:
    utterances = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS or not path.is_file():
            continue
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            raise DatasetError(f"{path}: audio directly in {root}; put each speaker's files in a folder named after the speaker")
        utterances.append(Utterance(_utterance_id(path, root), relative.parts[0], path))
    return utterances


def _read_kaldi_table(path: Path) -> dict[str, str]:
    table = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise DatasetError(f"{path}:{line_number}: expected '<key> <value>', got {line!r}")
        table[fields[0]] = fields[1].strip()
    return table


def _from_kaldi(wav_scp: Path) -> list[Utterance]:
    utt2spk_path = wav_scp.with_name("utt2spk")
    if not utt2spk_path.is_file():
        raise DatasetError(f"{wav_scp}: no utt2spk beside it ({utt2spk_path})")
    utt2spk = _read_kaldi_table(utt2spk_path)
    utterances = []
    for utterance_id, location in _read_kaldi_table(wav_scp).items():
        if utterance_id not in utt2spk:
            raise DatasetError(f"{utt2spk_path}: no speaker for utterance {utterance_id}")
        utterances.append(Utterance(utterance_id, utt2spk[utterance_id], _listed_path(wav_scp, utterance_id, location)))
    return utterances


def _listed_path(table: Path, name: str, location: str) -> Path:
    """The file a list (`wav.scp`, a path list) names for `name`; relative to the list; a command pipe is refused."""
    if location.endswith("|"):
        raise DatasetError(
            f"{table}: utterance {name} is a command pipe ({location!r}); only plain file paths are supported, convert the "
            "audio to files first"
        )
    path = Path(location)
    return path if path.is_absolute() else table.parent / path


def _from_csv(manifest: Path) -> list[Utterance]:
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "speaker"]:
        rows = rows[1:]
    utterances = []
    for line_number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise DatasetError(f"{manifest}: row {line_number} needs 'path,speaker', got {row!r}")
        path = manifest.parent / row[0].strip()
        utterances.append(Utterance(_utterance_id(path, manifest.parent), row[1].strip(), path))
    return utterances


def audio_files(source: str | Path) -> list[Path]:
    """The recordings of `source` when speakers do not matter: every supported audio file under a folder, at any
    depth, or the files a Kaldi `wav.scp` or CSV manifest names."""
    source = Path(source)
    if not source.is_dir() or (source / "wav.scp").is_file():
        return [u.path for u in discover_utterances(source)]
    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file())
    if not paths:
        raise DatasetError(f"{source}: no audio found ({', '.join(SUPPORTED_EXTENSIONS)})")
    return paths


LIST_SUFFIXES = (".scp", ".txt", ".lst")  # a Kaldi wav.scp (`name path` lines), or a list of paths, one per line


def named_recordings(sources) -> list[tuple[str, Path]]:
    """(name, path) of every recording `sources` give, in order: an audio file (named as given), a folder (every
    audio file below it, named by its path below the folder), a Kaldi `wav.scp` (`*.scp`: named by its keys) or a
    text list of paths (`*.txt`, `*.lst`: named as listed; relative paths are relative to the list)."""
    named = []
    for source in map(Path, sources):
        if source.is_dir():
            named += [(path.relative_to(source).as_posix(), path) for path in audio_files(source)]
        elif source.suffix.lower() in LIST_SUFFIXES and source.is_file():
            if source.suffix.lower() == ".scp":
                entries = list(_read_kaldi_table(source).items())
            else:
                entries = [(line.strip(), line.strip()) for line in source.read_text().splitlines() if line.strip()]
            named += [(name, _listed_path(source, name, location)) for name, location in entries]
        else:
            named.append((str(source), source))
    if not named:
        raise DatasetError(f"{', '.join(map(str, sources))}: no recordings")
    return named


def discover_utterances(source: str | Path) -> list[Utterance]:
    """All utterances of a corpus, sorted by id; raises `DatasetError` when none is found."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if source.is_dir() and (source / "wav.scp").is_file():
        utterances = _from_kaldi(source / "wav.scp")
    elif source.name == "wav.scp":
        utterances = _from_kaldi(source)
    elif source.suffix.lower() == ".csv":
        utterances = _from_csv(source)
    elif source.is_dir():
        utterances = _from_speaker_folders(source)
    else:
        raise DatasetError(f"{source}: not a folder, a Kaldi wav.scp or a .csv manifest")
    if not utterances:
        raise DatasetError(
            f"{source}: no audio found ({', '.join(SUPPORTED_EXTENSIONS)} in per-speaker folders, "
            "a Kaldi wav.scp + utt2spk, or a path,speaker CSV)"
        )
    duplicates = [i for i, count in Counter(u.utterance_id for u in utterances).items() if count > 1]
    if duplicates:
        raise DatasetError(f"{source}: utterance id {duplicates[0]!r} appears more than once")
    return sorted(utterances, key=lambda utterance: utterance.utterance_id)


def recordings_by_speaker(source, minimum_speakers: int = 1, purpose: str = "this") -> dict[str, list[Path]]:
    """{speaker: their recordings, in corpus order} of `source`, sorted by speaker; fewer than `minimum_speakers`
    speakers is an error naming the source and what needed them."""
    by_speaker: dict[str, list[Path]] = {}
    for utterance in discover_utterances(source):
        by_speaker.setdefault(utterance.speaker, []).append(utterance.path)
    if len(by_speaker) < minimum_speakers:
        raise DatasetError(f"{source}: {purpose} needs recordings of at least {minimum_speakers} speakers, found {len(by_speaker)}")
    return dict(sorted(by_speaker.items()))
