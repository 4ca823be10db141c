"""Score fusion of models with different front ends: fitted on training speakers, used wherever an encoder goes."""

import json

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.assembly import fuse, load_encoder
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.score_fusion import FusedEncoder, impostor_std
from tests.helpers import cli_in_process, synthetic_speech, tiny_model


@pytest.fixture
def two_models(tmp_path):
    linear = tmp_path / "linear.keras"
    tiny_model().save(linear)
    log = tmp_path / "models" / "log.keras"
    log.parent.mkdir()
    tiny_model(embedding_dim=8, features=FeatureConfig(energies="log", normalisation="utterance", trim="energy")).save(log)
    return linear, log


@pytest.fixture
def recordings(tmp_path):
    paths, labels = [], []
    for speaker, pitch in enumerate((100, 160, 230)):
        for take in range(3):
            path = tmp_path / "audio" / f"s{speaker}_{take}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, synthetic_speech(1.0, pitch=pitch + 7 * take, seed=10 * speaker + take), 16000)
            paths.append(path)
            labels.append(speaker)
    return paths, labels


def test_the_fused_cosine_is_the_z_normalised_weighted_sum(two_models, recordings, tmp_path):
    paths, labels = recordings
    target = fuse(two_models, paths, labels, tmp_path / "both.fusion.json", weights=[2, 1], progress=False)
    document = json.loads(target.read_text())
    assert [m["checkpoint"] for m in document["members"]] == ["linear.keras", "models/log.keras"]
    fused = load_encoder(target)
    assert isinstance(fused, FusedEncoder) and fused.embedding_dim == 16 + 8
    members = [SpeakerEncoder(path) for path in two_models]
    a, b = (np.stack([encoder.embed(p) for p in paths[:2]]) for encoder in members)
    stds = [impostor_std(encoder.embed_many(paths), np.array(labels)) for encoder in members]
    assert [m["impostor_std"] for m in document["members"]] == pytest.approx(stds)
    shares = np.array([2 / stds[0], 1 / stds[1]]) / (2 / stds[0] + 1 / stds[1])
    embeddings = fused.embed_many(paths[:2])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(embeddings[0] @ embeddings[1], shares[0] * a[0] @ a[1] + shares[1] * b[0] @ b[1], atol=1e-5)
    np.testing.assert_allclose(fused.embed(paths[0]), embeddings[0], atol=1e-6)


def test_bad_fusions_are_refused_and_commands_take_a_fusion(two_models, recordings, tmp_path, capsys):
    paths, labels = recordings
    with pytest.raises(ConfigError, match="fusion.json"):
        fuse(two_models, paths, labels, tmp_path / "both.json", progress=False)
    with pytest.raises(ConfigError, match="two or more models"):
        fuse(two_models[:1], paths, labels, tmp_path / "one.fusion.json", progress=False)
    broken = tmp_path / "broken.fusion.json"
    broken.write_text('{"format": "deep-speaker-score-fusion", "members": [{"checkpoint": "a.keras"}]}')
    with pytest.raises(CheckpointError, match="broken.fusion.json: not a readable score-fusion file"):
        load_encoder(broken)
    audio_dir = paths[0].parent
    (audio_dir / "by_speaker").mkdir()
    for path, label in zip(paths, labels):
        (audio_dir / "by_speaker" / f"s{label}").mkdir(exist_ok=True)
        path.rename(audio_dir / "by_speaker" / f"s{label}" / path.name)
    target = tmp_path / "cli.fusion.json"
    made = cli_in_process(capsys, "fuse", *two_models, target, "--audio_dir", audio_dir / "by_speaker", "--quiet")
    assert made.returncode == 0 and "from 9 recordings" in made.stdout
    first = next((audio_dir / "by_speaker" / "s0").iterdir())
    verified = cli_in_process(capsys, "verify", first, first, "--checkpoint_file", target, "--threshold", "0.5")
    assert verified.returncode == 0 and "same speaker" in verified.stdout


@pytest.mark.parametrize(
    "members,problem",
    [
        (
            [{"checkpoint": "a.keras", "weight": 1e308, "impostor_std": 0.1}, {"checkpoint": "b.keras", "weight": 1, "impostor_std": 0.1}],
            r"weight must be in \(0, 1e\+06\]",
        ),
        (
            [{"checkpoint": "a.keras", "weight": 1, "impostor_std": 1e-300}, {"checkpoint": "b.keras", "weight": 1, "impostor_std": 0.1}],
            r"impostor_std in \[0.0001, 2\]",
        ),
        (
            [
                {"checkpoint": "a.keras", "weight": 1, "impostor_std": 0.1, "extra": 1},
                {"checkpoint": "b.keras", "weight": 1, "impostor_std": 0.1},
            ],
            "a member holds exactly",
        ),
        (
            [{"checkpoint": "a.keras", "weight": True, "impostor_std": 0.1}, {"checkpoint": "b.keras", "weight": 1, "impostor_std": 0.1}],
            "malformed member",
        ),
    ],
)
def test_fusion_fields_out_of_range_or_unknown_are_refused(tmp_path, members, problem):
    import json

    from deep_speaker.score_fusion import read_fusion

    path = tmp_path / "odd.fusion.json"
    path.write_text(json.dumps({"format": "deep-speaker-score-fusion", "members": members}))
    with pytest.raises(CheckpointError, match=rf"odd.fusion.json: .*{problem}"):
        read_fusion(path)
    path.write_text(json.dumps({"format": "deep-speaker-score-fusion", "members": members[1:] * 2, "note": "x"}))
    with pytest.raises(CheckpointError, match=r"a fusion holds exactly 'format' and a list of 'members'"):
        read_fusion(path)
