import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.assembly import open_registry
from deep_speaker.enrol import SpeakerRegistry, file_digest
from deep_speaker.errors import RegistryError
from deep_speaker.verification import Verifier
from tests.helpers import ROOT, LookupEncoder, cli_in_process, save_tiny_model, synthetic_speech


@pytest.fixture
def registry(store_location):
    """An empty store of each back end (SQLite, PostgreSQL): every test that takes it runs on both."""
    with open_registry(store_location, LookupEncoder("model-a")) as store:
        yield store


def test_enroll_list_identify_verify_remove(registry):
    registry.enroll("alice", ["alice_1.wav", "alice_2.wav"])
    registry.enroll("bob", ["bob_1.wav"])
    assert registry.names() == [("alice", 2), ("bob", 1)]
    verifier = Verifier(registry.encoder, threshold=0.5)
    ranked = verifier.identify("alice_3.wav", registry, top_k=2).ranked
    assert [name for name, _ in ranked] == ["alice", "bob"] and ranked[0][1] > ranked[1][1]
    assert (
        verifier.verify_enrolled("bob_2.wav", "bob", registry).score > 0.95 > verifier.verify_enrolled("bob_2.wav", "alice", registry).score
    )
    registry.remove("bob")
    assert registry.names() == [("alice", 2)]
    with pytest.raises(RegistryError, match="no speaker named 'bob'"):
        registry.remove("bob")


def test_enrolment_averages_normalised_embeddings(registry):
    stored = registry.enroll("alice", ["alice_0.wav", "carol_0.wav"])
    np.testing.assert_allclose(stored, np.array([1, 0, 1, 0]) / np.sqrt(2), atol=1e-6)


def test_duplicate_name_needs_replace(registry):
    registry.enroll("alice", ["alice_1.wav"])
    with pytest.raises(RegistryError, match=r"already enrolled \(replace=True overwrites\)") as refused:
        registry.enroll("alice", ["carol_1.wav"])
    assert refused.value.cli_hint == "pass --replace"
    registry.enroll("alice", ["carol_1.wav"], replace=True)
    assert Verifier(registry.encoder).identify("carol_1.wav", registry, 1).ranked[0][0] == "alice"


def test_empty_store_and_no_files(registry):
    with pytest.raises(RegistryError, match="no speaker enrolled yet"):
        Verifier(registry.encoder).identify("alice_1.wav", registry)
    with pytest.raises(RegistryError, match="no files given"):
        registry.enroll("alice", [])


def test_store_of_another_model_is_refused(store_location):
    open_registry(store_location, LookupEncoder("model-a")).close()
    with pytest.raises(RegistryError, match="enrolled with model model-a, but the model in use is model-b"):
        open_registry(store_location, LookupEncoder("model-b"))


def test_a_store_opened_without_its_model_lists_and_removes_but_never_scores(store_location):
    with pytest.raises(RegistryError, match="no (such speaker store|speaker store in this database)"):
        open_registry(store_location, create=False)  # nothing there yet, and listing must not make a store
    with open_registry(store_location, LookupEncoder("model-a")) as store:
        store.enroll("alice", ["alice_1.wav"])
        store.enroll("bob", ["bob_1.wav"])
    with open_registry(store_location, create=False) as alone:
        assert alone.names() == [("alice", 1), ("bob", 1)] and alone.model_identity == "model-a"
        alone.remove("bob")
        for use in (lambda: alone.embeddings(), lambda: alone.embedding("alice"), lambda: alone.enroll("carol", ["carol_1.wav"])):
            with pytest.raises(RegistryError, match="opened without its model.*encoder of model model-a"):
                use()
    with open_registry(store_location, LookupEncoder("model-a")) as store:
        assert store.names() == [("alice", 1)]


def test_a_missing_or_empty_file_is_not_a_store(tmp_path):
    with pytest.raises(RegistryError, match="no such speaker store"):
        SpeakerRegistry(tmp_path / "missing.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(RegistryError, match="empty database, not a speaker store"):
        SpeakerRegistry(tmp_path / "empty.db")


def test_list_and_remove_load_no_model(tmp_path):
    with SpeakerRegistry(tmp_path / "s.db", LookupEncoder("model-a")) as store:
        store.enroll("alice", ["alice_1.wav"])
        store.enroll("bob", ["bob_1.wav"])
    script = "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); print('tf' if 'tensorflow' in sys.modules else 'no tf'); sys.exit(code)"
    for arguments, shown in ((["remove", "bob"], "removed 'bob'"), (["list"], "alice\t1 file(s)")):
        result = subprocess.run(
            [sys.executable, "-c", script, *arguments, "--store", str(tmp_path / "s.db")], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0 and shown in result.stdout and result.stdout.strip().endswith("no tf"), result.stderr


def test_not_a_database(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a speaker store"):
        SpeakerRegistry(path, LookupEncoder("m"))


def test_kill_9_during_enroll_leaves_old_or_new(store_location):
    store = store_location
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}]
        from tests.helpers import LookupEncoder
        from deep_speaker.assembly import open_registry
        registry = open_registry({store!r}, LookupEncoder("m"))
        registry.enroll("alice", ["alice_0.wav"], replace=True)
        print("ready", flush=True)
        k = 0
        while True:
            registry.enroll("alice", ["bob_0.wav" if k % 2 else "carol_0.wav"], replace=True)
            k += 1
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    process.kill()
    process.wait()
    if not store.startswith("postgresql://"):
        assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with open_registry(store, LookupEncoder("m")) as registry:
        assert registry.names() == [("alice", 1)]
        stored = registry.embedding("alice")
    assert any(np.allclose(stored, LookupEncoder().embed(f)) for f in ("alice_0.wav", "bob_0.wav", "carol_0.wav"))


def test_cli_enrolment_workflow(tmp_path, capsys, store_location):
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    other = save_tiny_model(tmp_path / "other.keras")
    files = {}
    for name, pitch in (("ann", 100), ("ben", 220)):
        for k in range(2):
            files[name, k] = tmp_path / f"{name}{k}.wav"
            sf.write(files[name, k], synthetic_speech(1.0, pitch=pitch, seed=k), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    common = ["--checkpoint_file", checkpoint, "--store", store_location, "--runtime", "keras"]

    assert cli_in_process(capsys, "enroll", "ann", files["ann", 0], files["ann", 1], *common).returncode == 0
    assert cli_in_process(capsys, "enroll", "ben", files["ben", 0], *common).returncode == 0
    duplicate = cli_in_process(capsys, "enroll", "ben", files["ben", 1], *common)
    assert duplicate.returncode == 2 and "already enrolled" in duplicate.stderr and "(pass --replace)" in duplicate.stderr
    no_speech = cli_in_process(capsys, "enroll", "cid", silent, *common)
    assert no_speech.returncode == 2 and "silent.wav: silent" in no_speech.stderr
    listing = cli_in_process(capsys, "list", *common)
    assert listing.stdout.splitlines() == ["ann\t2 file(s)", "ben\t1 file(s)"]
    identified = cli_in_process(capsys, "identify", files["ben", 1], "--top-k", "2", "--threshold", "-1", *common)
    assert identified.returncode == 0 and identified.stdout.count("\t") == 2 and "speaker: " in identified.stdout
    unknown = cli_in_process(capsys, "identify", files["ben", 1], "--threshold", "1.01", *common)
    assert "speaker: unknown" in unknown.stdout
    claim = cli_in_process(capsys, "verify", files["ann", 0], "--speaker", "ann", "--threshold", "0.0", *common)
    assert claim.returncode == 0 and "decision: same speaker" in claim.stdout
    uncalibrated = cli_in_process(capsys, "verify", files["ann", 0], files["ben", 0], *common)
    assert uncalibrated.returncode == 0 and "is not calibrated for cosine scores: calibrate it or give a threshold" in uncalibrated.stdout
    assert cli_in_process(capsys, "remove", "ben", *common).returncode == 0
    wrong_model = cli_in_process(capsys, "list", "--checkpoint_file", other, "--store", store_location, "--runtime", "keras")
    assert wrong_model.returncode == 2 and "embeddings of different models cannot be compared" in wrong_model.stderr
    assert cli_in_process(capsys, "remove", "ann", "--store", store_location).returncode == 0  # no model needed
    empty = cli_in_process(capsys, "identify", files["ann", 0], *common)  # a store with nobody in it
    assert empty.returncode == 2 and "no speaker enrolled yet" in empty.stderr


def test_store_is_keyed_by_the_model_not_its_file(tmp_path, store_location):
    from deep_speaker.embedding import SpeakerEncoder

    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    sf.write(tmp_path / "ann.wav", synthetic_speech(1.0), 16000)
    with open_registry(store_location, SpeakerEncoder(checkpoint)) as registry:
        registry.enroll("ann", [tmp_path / "ann.wav"])
    copy = tmp_path / "elsewhere" / "copy.keras"
    copy.parent.mkdir()
    copy.write_bytes(checkpoint.read_bytes())
    from deep_speaker.checkpoints import save_model
    from deep_speaker.model_files import load_model

    save_model(load_model(checkpoint), tmp_path / "resaved.keras")
    for path in (copy, tmp_path / "resaved.keras"):
        with open_registry(store_location, SpeakerEncoder(path)) as registry:
            assert registry.names() == [("ann", 1)]


def test_a_store_of_version_0_1_is_rekeyed(tmp_path):
    from deep_speaker.embedding import SpeakerEncoder

    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    store = tmp_path / "old.db"
    connection = sqlite3.connect(store)
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    connection.execute("CREATE TABLE speakers (name TEXT PRIMARY KEY, embedding BLOB NOT NULL, num_files INTEGER NOT NULL)")
    connection.execute("INSERT INTO meta VALUES ('model_id', ?)", (file_digest(checkpoint),))
    connection.commit()
    connection.close()
    encoder = SpeakerEncoder(checkpoint)
    with SpeakerRegistry(store, encoder) as registry:
        assert registry.model_identity == encoder.fingerprint
    assert dict(sqlite3.connect(store).execute("SELECT key, value FROM meta"))["model_id"] == encoder.fingerprint


def test_concurrent_enrolments_of_one_new_name_cannot_both_succeed(store_location):
    """Both pass the early check (the name is new), then race to write: exactly one wins."""
    first = open_registry(store_location, LookupEncoder("m"))
    second = open_registry(store_location, LookupEncoder("m"))
    original = second.encoder.embed_many

    def embed_while_the_other_enrols(paths, progress=False):
        first.enroll("alice", ["alice_0.wav"])
        return original(paths)

    second.encoder.embed_many = embed_while_the_other_enrols
    with pytest.raises(RegistryError, match="'alice' is already enrolled"):
        second.enroll("alice", ["carol_0.wav"])
    np.testing.assert_allclose(first.embedding("alice"), LookupEncoder().embed("alice_0.wav"))


def test_a_locked_store_waits_then_fails_clearly(tmp_path, monkeypatch):
    import deep_speaker.enrol as enrol

    monkeypatch.setattr(enrol, "BUSY_TIMEOUT_SECONDS", 0.2)
    registry = SpeakerRegistry(tmp_path / "s.db", LookupEncoder("m"))
    holder = sqlite3.connect(tmp_path / "s.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RegistryError, match="cannot (open|write to) the speaker store .*locked by another process"):
            SpeakerRegistry(tmp_path / "s.db", LookupEncoder("m")).enroll("bob", ["bob_0.wav"])
    finally:
        holder.rollback()
    registry.enroll("bob", ["bob_0.wav"])


def test_an_unrelated_database_is_refused_untouched_and_read_only_stores_still_read(tmp_path, monkeypatch):
    other = tmp_path / "accounts.db"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE accounts (id INTEGER)")
    connection.commit()
    connection.close()
    before = other.read_bytes()
    with pytest.raises(RegistryError, match="accounts.db: an SQLite database but not a speaker store"):
        SpeakerRegistry(other, LookupEncoder("m"))
    assert other.read_bytes() == before

    store = tmp_path / "s.db"
    with SpeakerRegistry(store, LookupEncoder("m")) as registry:
        registry.enroll("alice", ["alice_0.wav"])
    before = store.read_bytes()
    import deep_speaker.enrol as enrol

    monkeypatch.setattr(enrol.os, "access", lambda path, mode: False)  # as for a user without write permission
    with SpeakerRegistry(store, LookupEncoder("m")) as registry:
        assert registry.read_only and registry.names() == [("alice", 1)]
        assert Verifier(registry.encoder, threshold=0.5).identify("alice_1.wav", registry).speaker == "alice"
        with pytest.raises(RegistryError, match="read-only"):
            registry.enroll("bob", ["bob_0.wav"])
    assert store.read_bytes() == before


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "line\nbreak", "x" * 201])
def test_names_are_validated(registry, name):
    with pytest.raises(RegistryError, match="speaker name"):
        registry.enroll(name, ["alice_0.wav"])


def test_reading_commands_never_create_a_store(tmp_path, capsys, monkeypatch):
    from deep_speaker.enrol import check_name

    monkeypatch.chdir(tmp_path)
    for arguments in (["list"], ["remove", "ann"], ["identify", "a.wav"], ["verify", "a.wav", "--speaker", "ann"]):
        result = cli_in_process(capsys, *arguments)
        assert result.returncode == 2 and "speakers.db: no such speaker store" in result.stderr, arguments
    assert not (tmp_path / "speakers.db").exists()
    with pytest.raises(RegistryError, match=r"without '/' or '\\'"):
        check_name("sales/ann")
    with pytest.raises(RegistryError, match="no such speaker store"):
        SpeakerRegistry(tmp_path / "none.db", LookupEncoder("m"), create=False)


@pytest.mark.slow
def test_a_database_with_other_tables_of_those_names_is_refused_untouched(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE speakers (id INTEGER)")
        connection.execute("INSERT INTO speakers VALUES (7)")
    with pytest.raises(RegistryError, match="a table named meta or speakers that is not a speaker store; left untouched"):
        open_registry(postgres_url, LookupEncoder("m"))
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT id FROM speakers").fetchall() == [(7,)]
    with pytest.raises(RegistryError, match=r"postgresql://postgres@127\.0\.0\.1:\d+/no_such_database: cannot open .*does not exist"):
        open_registry(postgres_url.rsplit("/", 1)[0] + "/no_such_database", LookupEncoder("m"))
