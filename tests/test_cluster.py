"""Corpus embedding on Ray: the same embeddings as `embed`, Parquet parts with a manifest, resumed after an
interruption, refused recordings recorded (a local Ray instance with two workers, on loopback)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import ROOT, cli_in_process, save_tiny_model, synthetic_speech

pytestmark = pytest.mark.slow  # Ray's start-up (about 10 s) and one encoder per worker


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is in requirements.txt; pip install 'ray[data]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_corpus_embeds_as_embed_does_resumes_and_records_refusals(ray_local, tmp_path, capsys):
    from deep_speaker.cluster import embed_corpus, finished_utterances, read_corpus_embeddings
    from deep_speaker.embedding import SpeakerEncoder

    model = save_tiny_model(tmp_path / "m.keras", embedding_dim=16)
    corpus = tmp_path / "corpus"
    for speaker in range(3):
        for take in range(4):
            path = corpus / f"s{speaker}" / f"{take}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synthetic_speech(1.0 + 0.2 * take, pitch=100 + 60 * speaker, seed=take), 16000)
    sf.write(corpus / "s0" / "silent.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "embeddings"
    embed_corpus([corpus], out, model, workers=1, batch_size=4, part_size=4, progress=False)
    names, vectors = read_corpus_embeddings(out)
    assert len(names) == 13 and len(set(names)) == 13
    expected = SpeakerEncoder(model).embed_many([corpus / name for name in names if "silent" not in name])
    found = vectors[[i for i, name in enumerate(names) if "silent" not in name]]
    np.testing.assert_allclose(found, expected, atol=1e-6)  # exactly what `embed` gives
    assert np.all(np.isnan(vectors[names.index("s0/silent.wav")]))  # refused, and said why in its row
    import pyarrow.parquet as pq

    refusals = [
        r
        for part in json.loads((out / "manifest.json").read_text())["parts"]
        for r in pq.read_table(out / part["file"])["refused"].to_pylist()
    ]
    assert sum(bool(r) for r in refusals) == 1
    # resume: a job killed (with its Ray processes) once its first parts have landed, then run again
    resumed = tmp_path / "resumed"
    command = [sys.executable, "cli.py", "embed-corpus", str(corpus), "--out-dir", str(resumed), "--checkpoint-file", str(model)]
    child = subprocess.Popen(
        [*command, "--part-size", "2", "--batch-size", "1", "--quiet"], cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(finished_utterances(resumed)) < 2:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    before = finished_utterances(resumed)
    assert 2 <= len(before) < 13
    made = cli_in_process(capsys, "embed-corpus", corpus, "--out-dir", resumed, "--checkpoint-file", model, "--workers", "2", "--quiet")
    assert made.returncode == 0 and "13 utterances embedded" in made.stdout, made.stderr
    again_names, again = read_corpus_embeddings(resumed)
    assert sorted(again_names) == sorted(names) and before <= set(again_names)  # nothing twice, nothing missing
    order = [again_names.index(name) for name in names]
    np.testing.assert_allclose(again[order], vectors, atol=1e-6, equal_nan=True)


def test_a_corpus_diarizes_as_diarize_does_and_records_refusals(ray_local, tmp_path, capsys):
    from deep_speaker.assembly import load_diarizer
    from deep_speaker.cluster import read_corpus_turns
    from deep_speaker.diarization.output import segments_json
    from deep_speaker.diarization.pipeline import DiarizationConfig
    from tests.helpers import pitch_conversation

    model = save_tiny_model(tmp_path / "m.keras", embedding_dim=16)
    corpus = tmp_path / "meetings"
    corpus.mkdir()
    for number in range(3):
        wave, _ = pitch_conversation([(110, 2.0), (230, 2.0 + number), (110, 1.5)])
        sf.write(corpus / f"meeting{number}.wav", wave, 16000)
    sf.write(corpus / "silent.wav", np.zeros(32000, np.float32), 16000)
    options = ["--threshold", "0.5", "--vad", "energy", "--exclusive", "--checkpoint-file", model]
    made = cli_in_process(capsys, "diarize-corpus", corpus, "--out-dir", tmp_path / "turns", "--workers", "2", *options, "--quiet")
    assert made.returncode == 0 and "4 recordings diarized" in made.stdout, made.stderr
    turns = read_corpus_turns(tmp_path / "turns")
    diarizer = load_diarizer(model, DiarizationConfig(ahc_threshold=0.5, vad="energy", exclusive=True))
    for number in range(3):
        expected = json.loads(segments_json(diarizer.diarize(corpus / f"meeting{number}.wav")))
        assert turns[f"meeting{number}.wav"] == expected and expected  # what `diarize --json` writes, exactly
    assert turns["silent.wav"] == []
    again = cli_in_process(capsys, "diarize-corpus", corpus, "--out-dir", tmp_path / "turns", *options, "--min-speakers", "2", "--quiet")
    assert again.returncode == 2 and "the results of another job" in again.stderr  # other options: another folder
