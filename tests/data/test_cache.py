import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deep_speaker.data.cache import build_feature_cache, read_manifest
from deep_speaker.errors import CacheError
from deep_speaker.features import FeatureConfig, file_features
from tests.helpers import ROOT, cli_in_process, write_corpus
from tests.helpers import run_cli as _cli


def test_builds_manifest_and_features(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=3, utterances=2)
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=2, progress=False)
    assert (summary.total, summary.computed, summary.reused, summary.failures) == (6, 6, 0, [])
    entries = read_manifest(tmp_path / "wd")
    assert [e.speaker for e in entries] == ["spk0", "spk0", "spk1", "spk1", "spk2", "spk2"]
    first = entries[0]
    cached = np.load(first.feature_path)
    np.testing.assert_array_equal(cached, file_features(corpus / "spk0" / "utt0.flac"))
    assert first.num_frames == cached.shape[0]


def test_rerun_reuses_and_recomputes_only_missing(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    victim = tmp_path / "wd" / "features" / "spk1" / "utt0.npy"
    victim.unlink()
    (victim.parent / ".utt1.npy.abc.tmp").write_bytes(b"half written")
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    assert (summary.computed, summary.reused) == (1, 3)
    assert victim.is_file()
    assert not list((tmp_path / "wd").rglob("*.tmp"))


def test_corrupt_file_is_reported_and_run_continues(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    (corpus / "spk0" / "broken.flac").write_bytes(b"not a flac at all")
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=2, progress=False)
    assert summary.computed == 4
    assert len(summary.failures) == 1 and "broken.flac" in summary.failures[0][0]
    assert "cannot decode" in str(summary)
    assert len(read_manifest(tmp_path / "wd")) == 4
    assert "broken.flac" in (tmp_path / "wd" / "failures.csv").read_text()


def test_other_feature_config_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=1, utterances=1)
    build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    assert json.loads((tmp_path / "wd" / "features.json").read_text())["trim"] == "reference"
    with pytest.raises(CacheError, match="features were cached with"):
        build_feature_cache(corpus, tmp_path / "wd", FeatureConfig(trim="energy"), workers=1, progress=False)


def test_missing_manifest(tmp_path):
    with pytest.raises(CacheError, match="not a feature cache"):
        read_manifest(tmp_path)


def test_cli_build_mfcc_and_kill_resume(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=6, utterances=5)
    working_dir = tmp_path / "wd"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "build-mfcc-cache",
            "--audio_dir",
            str(corpus),
            "--working_dir",
            str(working_dir),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    features_dir = working_dir / "features"
    for _ in range(600):
        if features_dir.exists() and len(list(features_dir.rglob("*.npy"))) >= 3:
            break
        process.poll()
        if process.returncode is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    result = _cli("build-mfcc", "--audio_dir", str(corpus), "--working_dir", str(working_dir), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "30 utterances" in result.stdout and "0 failed" in result.stdout
    for entry in read_manifest(working_dir):
        assert np.load(entry.feature_path).shape == (entry.num_frames, 64)


def test_cli_reports_bad_source_without_traceback(tmp_path, capsys):
    result = cli_in_process(capsys, "build-mfcc", "--audio_dir", str(tmp_path / "absent"), "--working_dir", str(tmp_path / "wd"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_log_energies_cache_refuses_a_linear_rerun_and_old_configs_read_as_linear(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=1, utterances=1)
    build_feature_cache(corpus, tmp_path / "log", FeatureConfig(energies="log"), workers=1, progress=False)
    np.testing.assert_array_equal(
        np.load(read_manifest(tmp_path / "log")[0].feature_path),
        file_features(corpus / "spk0" / "utt0.flac", FeatureConfig(energies="log")),
    )
    with pytest.raises(CacheError, match="'energies': 'log'"):
        build_feature_cache(corpus, tmp_path / "log", workers=1, progress=False)
    old = tmp_path / "old"
    old.mkdir()
    (old / "features.json").write_text(json.dumps({"sample_rate": 16000, "num_fbanks": 64, "trim": "reference"}))
    assert build_feature_cache(corpus, old, workers=1, progress=False).computed == 1


def test_truncated_cached_features_are_recomputed(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    victim = next((tmp_path / "wd" / "features").rglob("*.npy"))
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    assert summary.computed == 1 and summary.reused == 3 and victim.read_bytes() == good


def test_bad_worker_counts_are_refused(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=1)
    result = cli_in_process(capsys, "build-mfcc", "--audio_dir", corpus, "--working_dir", tmp_path / "wd", "--workers", "-2")
    assert result.returncode == 2 and "argument --workers: must be at least 1, got -2" in result.stderr


@pytest.mark.slow
def test_workers_exit_when_build_mfcc_is_killed(tmp_path):
    import signal

    corpus = write_corpus(tmp_path / "corpus", speakers=6, utterances=100)
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "build-mfcc",
            "--audio_dir",
            str(corpus),
            "--working_dir",
            str(tmp_path / "wd"),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def children() -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                status = (entry / "status").read_text() if entry.name.isdigit() else ""
            except OSError:
                continue
            if f"\nPPid:\t{process.pid}\n" in status and "spawn_main" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.add(int(entry.name))
        return found

    deadline = time.time() + 60
    while time.time() < deadline and len(children()) < 2:
        time.sleep(0.05)
    workers = children()
    assert workers, "no worker started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_noise_hum_and_fragments_are_refused_not_cached(tmp_path):
    import soundfile as sf

    from tests.helpers import noise, synthetic_speech

    corpus = write_corpus(tmp_path / "corpus", speakers=2, utterances=2)
    sf.write(corpus / "spk0" / "white.flac", noise("white", 3.0, level=0.3), 16000)
    sf.write(corpus / "spk0" / "hum.flac", noise("hum", 3.0, level=0.3), 16000)
    sf.write(corpus / "spk1" / "fragment.flac", synthetic_speech(1.0)[8000 : 8000 + 2 * 160 + 400], 16000)  # 2-3 frames of speech
    summary = build_feature_cache(corpus, tmp_path / "wd", workers=1, progress=False)
    reasons = {Path(path).name: reason for path, reason in summary.failures}
    assert summary.computed == 4 and set(reasons) == {"white.flac", "hum.flac", "fragment.flac"}
    assert "no speech found" in reasons["white.flac"] and "no speech found" in reasons["hum.flac"]
    assert "training needs at least 0.3 s" in reasons["fragment.flac"]
    assert not list((tmp_path / "wd" / "features").rglob("white.npy")) and len(read_manifest(tmp_path / "wd")) == 4
