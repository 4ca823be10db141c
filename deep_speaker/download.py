"""Download the reference's published checkpoints: resumable (HTTP Range on a `.part` file), verified by size
and SHA-256 before the file takes its name; a mismatch is refused and nothing is left under the final name.

What a server sends cannot hurt the machine: no more than the expected size is written, the whole download has a
deadline (a server trickling a byte at a time cannot hang it), and the `.part` file is opened without following
links (a link planted there cannot make the download overwrite another file)."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import DeepSpeakerError

CHUNK = 1 << 20
DEADLINE_SECONDS = 3600.0  # the whole download (the published 283 MB at 80 KB/s); resumable after it


class DownloadError(DeepSpeakerError):
    """A download that failed, was interrupted (resumable), or gave a file other than the one expected."""


@dataclass(frozen=True)
class PublishedCheckpoint:
    file_name: str
    sha256: str
    size: int
    url: str  # the authors' Google Drive file, through its direct-download endpoint
    page: str  # the link in the reference's README (for a browser when the direct endpoint refuses)
    description: str = ""  # what it is, for `download-checkpoint --help`


def _drive(file_id: str) -> tuple[str, str]:
    return (
        f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",
        f"https://drive.google.com/file/d/{file_id}",
    )


PUBLISHED = {
    "triplet": PublishedCheckpoint(
        "ResCNN_triplet_training_checkpoint_265.h5",
        "995f4f513e24e2d22bc7f178e70c33c8913b307b69b0c8619f9bc0055c1134c3",
        97_054_080,
        *_drive("1F9NvdrarWZNktdX9KlRYWWHDwRkip_aP"),
        "softmax + triplet, 2,484 LibriSpeech speakers",
    ),
    "softmax": PublishedCheckpoint(
        "ResCNN_checkpoint_102.h5",
        "ca023c9204b7f9d748956ba1c03e032f4c9d8f1e8dbcf44e78c10d16f71cc0c2",
        296_364_940,
        *_drive("1SJBmHpnaW1VcbFWP6JfvbT3wWP9PsqxS"),
        "softmax, 921 speakers",
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    target,
    sha256: str,
    size: int,
    progress: bool = True,
    timeout: float = 60.0,
    page: str | None = None,
    deadline: float = DEADLINE_SECONDS,
) -> Path:
    """`url` -> `target`, resuming `target.part` if an earlier attempt stopped; returns `target`. A target that
    already has the expected SHA-256 is kept as is. `timeout`: seconds without a byte; `deadline`: for the whole."""
    target = Path(target)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"{url}: not an http:// or https:// address")
    if target.is_file() and not target.is_symlink() and target.stat().st_size == size and sha256_of(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if partial.is_symlink() or (partial.exists() and not partial.is_file()):
        raise DownloadError(f"{partial}: is a link or not a plain file; the download writes only its own file there (remove it)")
    have = partial.stat().st_size if partial.is_file() else 0
    if have > size:
        partial.unlink()
        have = 0
    if have < size:
        _fetch(url, partial, have, size, progress, timeout, page, time.monotonic() + deadline)
    actual_size = partial.stat().st_size
    actual = sha256_of(partial)
    if actual_size != size or actual != sha256:  # a complete answer of another length is another file too
        partial.unlink()
        raise DownloadError(
            f"{url}: refused: got {actual_size:,} bytes with SHA-256 {actual}, expected {size:,} bytes with SHA-256 {sha256} "
            "(not the published file; the download was deleted)"
        )
    partial.replace(target)
    return target


def _open_part(partial: Path, append: bool) -> int:
    """The `.part` file for writing, never through a symbolic link (O_NOFOLLOW) and only as a file of its own."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(partial, flags, 0o644)
    except OSError as error:
        raise DownloadError(f"{partial}: cannot write the download there ({error.strerror}; a link is refused)") from None


def _fetch(url: str, partial: Path, have: int, size: int, progress: bool, timeout: float, page: str | None, deadline: float) -> None:
    """Append the rest of `url` from byte `have` to `partial` (from 0 if the server ignores the range), at most up
    to `size` bytes and until `deadline` (monotonic time); a stop before the end is resumable."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        raise DownloadError(f"{url}: cannot download ({getattr(error, 'reason', error)}); {_retry(partial, page)}") from None
    with response:
        if response.headers.get_content_type() == "text/html":
            raise DownloadError(
                f"{url}: the server answered with a web page, not the file (a quota or sign-in page?); {_retry(partial, page)}"
            )
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        announced = response.headers.get("Content-Length")
        end = have + int(announced) if announced and announced.isdigit() else size
        if end > size:
            raise DownloadError(f"{url}: the server announces {end:,} bytes, more than the {size:,} of the published file; refused")
        descriptor = _open_part(partial, append=bool(have))
        written = have
        try:
            with (
                os.fdopen(descriptor, "wb") as stream,
                tqdm(total=end, initial=have, unit="B", unit_scale=True, desc=partial.stem, disable=not progress) as bar,
            ):
                while block := response.read1(CHUNK):  # what has arrived, so the deadline is checked as bytes trickle in
                    if written + len(block) > size:
                        raise DownloadError(f"{url}: the server sent more than the {size:,} bytes of the published file; refused")
                    stream.write(block)
                    written += len(block)
                    bar.update(len(block))
                    if time.monotonic() > deadline:
                        raise DownloadError(
                            f"{url}: the download did not finish before its deadline ({written:,} of {end:,} bytes); {_retry(partial, page)}"
                        )
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            raise DownloadError(f"{url}: the download stopped ({error!r}); {_retry(partial, page)}") from None
    got = partial.stat().st_size
    if got < end:
        raise DownloadError(f"{url}: the connection closed after {got:,} of {end:,} bytes; {_retry(partial, page)}")


def _retry(partial: Path, page: str | None) -> str:
    advice = f"run the same command again to resume ({partial} is kept)"
    return advice + (f", or download it in a browser from {page} and put it at {partial.with_suffix('')}" if page else "")


def download_checkpoint(name: str, folder=".", url: str | None = None, progress: bool = True, deadline: float = DEADLINE_SECONDS) -> Path:
    """The published checkpoint `name` (triplet | softmax) into `folder`, from its authors' link or `url` (a mirror)."""
    if name not in PUBLISHED:
        raise DownloadError(f"unknown checkpoint {name!r}; choose from {sorted(PUBLISHED)}")
    published = PUBLISHED[name]
    return download(
        url or published.url,
        Path(folder) / published.file_name,
        published.sha256,
        published.size,
        progress,
        page=published.page,
        deadline=deadline,
    )
