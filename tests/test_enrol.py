import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.checkpoints import save_model
from deep_speaker.enrol import Calibration, RegistryError, SpeakerRegistry, model_id, resolve_threshold
from deep_speaker.models import build_rescnn
from conftest import synthetic_speech

ROOT = Path(__file__).resolve().parents[1]


class LookupEncoder:
    """Encoder stand-in: a file 'name_k' embeds to a fixed unit vector of speaker `name` plus small noise k."""

    embedding_dim = 4
    directions = {"alice": [1, 0, 0, 0], "bob": [0, 1, 0, 0], "carol": [0, 0, 1, 0], "stranger": [0, 0, 0, 1]}

    def embed(self, path):
        name, k = Path(path).stem.split("_")
        vector = np.array(self.directions[name], np.float32) + 0.05 * int(k)
        return vector / np.linalg.norm(vector)

    def embed_many(self, paths):
        return np.stack([self.embed(p) for p in paths])


@pytest.fixture
def registry(tmp_path):
    with SpeakerRegistry(tmp_path / "s.db", LookupEncoder(), "model-a") as store:
        yield store


def test_enroll_list_identify_verify_remove(registry):
    registry.enroll("alice", ["alice_1.wav", "alice_2.wav"])
    registry.enroll("bob", ["bob_1.wav"])
    assert registry.names() == [("alice", 2), ("bob", 1)]
    ranked = registry.identify("alice_3.wav", top_k=2)
    assert [name for name, _ in ranked] == ["alice", "bob"] and ranked[0][1] > ranked[1][1]
    assert registry.verify("bob_2.wav", "bob") > 0.95 > registry.verify("bob_2.wav", "alice")
    registry.remove("bob")
    assert registry.names() == [("alice", 2)]
    with pytest.raises(RegistryError, match="no speaker named 'bob'"):
        registry.remove("bob")


def test_enrolment_averages_normalised_embeddings(registry):
    stored = registry.enroll("alice", ["alice_0.wav", "carol_0.wav"])
    np.testing.assert_allclose(stored, np.array([1, 0, 1, 0]) / np.sqrt(2), atol=1e-6)


def test_duplicate_name_needs_replace(registry):
    registry.enroll("alice", ["alice_1.wav"])
    with pytest.raises(RegistryError, match="already enrolled; pass --replace"):
        registry.enroll("alice", ["carol_1.wav"])
    registry.enroll("alice", ["carol_1.wav"], replace=True)
    assert registry.identify("carol_1.wav", 1)[0][0] == "alice"


def test_empty_store_and_no_files(registry):
    with pytest.raises(RegistryError, match="no speaker enrolled yet"):
        registry.identify("alice_1.wav")
    with pytest.raises(RegistryError, match="no files given"):
        registry.enroll("alice", [])


def test_store_of_another_model_is_refused(tmp_path):
    SpeakerRegistry(tmp_path / "s.db", LookupEncoder(), "model-a").close()
    with pytest.raises(RegistryError, match="enrolled with model model-a, but the model in use is model-b"):
        SpeakerRegistry(tmp_path / "s.db", LookupEncoder(), "model-b")


def test_not_a_database(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a speaker store"):
        SpeakerRegistry(path, LookupEncoder(), "m")


def test_kill_9_during_enroll_leaves_old_or_new(tmp_path):
    store = tmp_path / "s.db"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from test_enrol import LookupEncoder
        from deep_speaker.enrol import SpeakerRegistry
        registry = SpeakerRegistry({str(store)!r}, LookupEncoder(), "m")
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
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with SpeakerRegistry(store, LookupEncoder(), "m") as registry:
        assert registry.names() == [("alice", 1)]
        stored = registry._matrix()[1][0]
    assert any(np.allclose(stored, LookupEncoder().embed(f)) for f in ("alice_0.wav", "bob_0.wav", "carol_0.wav"))


def test_calibration_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    target, nontarget = rng.normal(0.5, 0.15, 500), rng.normal(0.2, 0.15, 20000)  # EER about 16 %
    calibration = Calibration.from_scores(target, nontarget, "trials.txt")
    assert calibration.eer < calibration.far1 < calibration.far0_1
    assert np.mean(nontarget >= calibration.far1) <= 0.01 and np.mean(nontarget >= calibration.far0_1) <= 0.001
    checkpoint = tmp_path / "m.keras"
    checkpoint.write_bytes(b"x")
    assert resolve_threshold(checkpoint)[0] is None
    calibration.save(checkpoint)
    assert Calibration.load(checkpoint) == calibration
    assert resolve_threshold(checkpoint, "far1") == (calibration.far1, "operating point far1")
    assert resolve_threshold(checkpoint, "far1", 0.3) == (0.3, "--threshold")


def test_model_id_changes_with_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert model_id(a) != model_id(b) and model_id(a) == model_id(a)


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True)


def test_cli_enrolment_workflow(tmp_path):
    checkpoint, other = tmp_path / "tiny.keras", tmp_path / "other.keras"
    save_model(build_rescnn(width=0.0625, embedding_dim=16), checkpoint)
    save_model(build_rescnn(width=0.0625, embedding_dim=16), other)
    files = {}
    for name, pitch in (("ann", 100), ("ben", 220)):
        for k in range(2):
            files[name, k] = tmp_path / f"{name}{k}.wav"
            sf.write(files[name, k], synthetic_speech(1.0, pitch=pitch, seed=k), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    common = ["--checkpoint_file", checkpoint, "--store", tmp_path / "s.db"]

    assert _cli("enroll", "ann", files["ann", 0], files["ann", 1], *common).returncode == 0
    assert _cli("enroll", "ben", files["ben", 0], *common).returncode == 0
    duplicate = _cli("enroll", "ben", files["ben", 1], *common)
    assert duplicate.returncode == 2 and "--replace" in duplicate.stderr
    no_speech = _cli("enroll", "cid", silent, *common)
    assert no_speech.returncode == 2 and "silent.wav: silent" in no_speech.stderr
    listing = _cli("list", *common)
    assert listing.stdout.splitlines() == ["ann\t2 file(s)", "ben\t1 file(s)"]
    identified = _cli("identify", files["ben", 1], "--top-k", "2", "--threshold", "-1", *common)
    assert identified.returncode == 0 and identified.stdout.count("\t") == 2 and "speaker: " in identified.stdout
    unknown = _cli("identify", files["ben", 1], "--threshold", "1.01", *common)
    assert "speaker: unknown" in unknown.stdout
    claim = _cli("verify", files["ann", 0], "--speaker", "ann", "--threshold", "0.0", *common)
    assert claim.returncode == 0 and "decision: same speaker" in claim.stdout
    uncalibrated = _cli("verify", files["ann", 0], files["ben", 0], *common)
    assert uncalibrated.returncode == 0 and "decision: none (no calibration" in uncalibrated.stdout
    assert _cli("remove", "ben", *common).returncode == 0
    wrong_model = _cli("list", "--checkpoint_file", other, "--store", tmp_path / "s.db")
    assert wrong_model.returncode == 2 and "embeddings of different models cannot be compared" in wrong_model.stderr
    empty = _cli("identify", files["ann", 0], "--checkpoint_file", checkpoint, "--store", tmp_path / "empty.db")
    assert empty.returncode == 2 and "no speaker enrolled yet" in empty.stderr


def test_registry_identity_defaults_to_checkpoint(tmp_path):
    from deep_speaker.embedding import SpeakerEncoder

    checkpoint = tmp_path / "tiny.keras"
    save_model(build_rescnn(width=0.0625, embedding_dim=16), checkpoint)
    with SpeakerRegistry(tmp_path / "s.db", SpeakerEncoder(checkpoint)) as registry:
        assert registry.model_identity == model_id(checkpoint)
    with pytest.raises(RegistryError, match="pass model_identity"):
        SpeakerRegistry(tmp_path / "t.db", SpeakerEncoder(model=build_rescnn(width=0.0625, embedding_dim=16)))
