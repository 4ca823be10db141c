"""Shared fixtures: synthetic audio, and access to ../shared (skipped locally if absent, a failure under
CI=true, where it must be present). Helpers to import live in `tests/helpers.py`."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import soundfile as sf

from tests.helpers import synthetic_speech

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LEGACY = SHARED / "fixtures" / "deep_speaker_legacy"
PYTORCH_IMPORT = SHARED / "fixtures" / "pytorch_import"
DATA = SHARED / "data"


def require_shared(path: Path = SHARED) -> Path:
    """Return `path` inside ../shared, or skip (locally) / fail (CI=true) when it is missing."""
    if not path.exists():
        message = f"{path} is missing: these tests need the shared data beside the repository (../shared)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True, scope="session")
def private_home(tmp_path_factory):
    """Calibrations written by tests go to a temporary DEEP_SPEAKER_HOME, never the user's (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("deep_speaker_home")
    previous = os.environ.get("DEEP_SPEAKER_HOME")
    os.environ["DEEP_SPEAKER_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DEEP_SPEAKER_HOME")
    else:
        os.environ["DEEP_SPEAKER_HOME"] = previous


@pytest.fixture
def shared_data() -> Path:
    return require_shared(DATA)


@pytest.fixture
def legacy_fixtures() -> Path:
    return require_shared(LEGACY)


@pytest.fixture
def pytorch_fixtures() -> Path:
    return require_shared(PYTORCH_IMPORT)


@pytest.fixture
def speech_file(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    sf.write(path, synthetic_speech(), 16000)
    return path


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """Features of a synthetic 4-speaker corpus (5 utterances each), built once per session; copy before writing."""
    from tests.helpers import feature_cache

    return feature_cache(tmp_path_factory.mktemp("tiny_cache"))


@pytest.fixture
def working_dir(tiny_cache, tmp_path) -> Path:
    """A private copy of `tiny_cache` that a test may train in."""
    import shutil

    return shutil.copytree(tiny_cache, tmp_path / "wd")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A real PostgreSQL 16 server with pgvector (the binaries of the `pgserver` wheel: Debian bookworm packages no
    pgvector) on a loopback port, for the session: its base URL. Run as `nobody` when the tests run as root, since
    PostgreSQL refuses root. Skipped where it is not installed, a failure under CI=true."""
    from tests.helpers import start_postgres

    server = start_postgres()
    yield server.url
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's server."""
    import uuid

    import psycopg

    name = f"store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_location(request, tmp_path) -> str:
    """Where a store goes, once per back end: an SQLite file, then a PostgreSQL database (the slow tier: a server)."""
    return str(tmp_path / "s.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
