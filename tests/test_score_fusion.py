"""Score fusion of models with different front ends: fitted on training speakers, used wherever an encoder goes."""

import json

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.assembly import fuse, load_encoder
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.score_fusion import FusedEncoder, fit_weights, impostor_std, leave_one_domain_out
from deep_speaker.scoring.metrics import compute_eer
from tests.helpers import cli_in_process, synthetic_speech, tiny_model


@pytest.fixture
def two_models(tmp_path):
    import keras

    keras.utils.set_random_seed(0)  # the same two untrained models every run
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
    target = fuse(two_models, paths, labels, tmp_path / "both.fusion.json", weights=[2, 1], progress=False, runtime="keras")
    document = json.loads(target.read_text())
    assert [m["checkpoint"] for m in document["members"]] == ["linear.keras", "models/log.keras"]
    fused = load_encoder(target, runtime="keras")
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


def _domain(rng, trials: int, separations, shift: float = 0.0):
    """Synthetic z-scores of one domain: member k separates targets from non-targets by `separations[k]`."""
    labels = np.arange(trials) % 2
    scores = rng.normal(size=(trials, len(separations))) + np.outer(labels, separations) + shift
    return scores, labels


def test_fitted_weights_follow_the_stronger_member_and_ignore_a_domain_shift():
    rng = np.random.default_rng(0)
    domains = {"a": _domain(rng, 4000, [3.0, 1.0]), "b": _domain(rng, 4000, [2.5, 0.8])}
    weights = fit_weights(domains)
    assert weights.sum() == pytest.approx(1) and weights[0] > 0.7  # a stronger member's share: d' ratio ~ 3 : 1
    shifted = {"a": domains["a"], "b": (domains["b"][0] + 4.0, domains["b"][1])}  # every score of b moved up
    np.testing.assert_allclose(fit_weights(shifted), weights, atol=1e-3)
    with pytest.raises(ConfigError, match="no positive weight"):
        fit_weights({"a": _domain(rng, 2000, [2.0, -1.0])})
    with pytest.raises(ConfigError, match="both target and non-target"):
        fit_weights({"a": (np.zeros((4, 2)), np.ones(4))})


def test_leave_one_domain_out_reports_each_domain_with_weights_fitted_elsewhere():
    rng = np.random.default_rng(1)
    domains = {
        "home": _domain(rng, 3000, [1.5, 1.5]),
        "channel": _domain(rng, 3000, [1.0, 2.0], shift=1.0),
        "language": _domain(rng, 3000, [0.5, 2.5], shift=-2.0),
    }
    report = leave_one_domain_out(domains)
    assert set(report) == set(domains)
    for held, check in report.items():
        others = {name: domain for name, domain in domains.items() if name != held}
        np.testing.assert_allclose(check["weights"], fit_weights(others))
        scores, labels = domains[held]
        assert check["eer"] == pytest.approx(compute_eer(scores[labels == 1] @ check["weights"], scores[labels == 0] @ check["weights"])[0])
        assert len(check["member_eers"]) == 2
    # fitted where member 2 is the stronger, the home domain's weights lean to member 2; fitted with home, less so
    assert report["home"]["weights"][1] > 0.6 and report["language"]["weights"][1] < report["home"]["weights"][1]
    with pytest.raises(ConfigError, match="at least two domains"):
        leave_one_domain_out({"home": domains["home"]})


@pytest.mark.slow
def test_fuse_fits_its_weights_on_labelled_domains(two_models, recordings, tmp_path, capsys):
    paths, labels = recordings
    root = paths[0].parent
    for name in ("one", "two"):
        pairs = [(1, a, b) for a in paths for b in paths if a < b and labels[paths.index(a)] == labels[paths.index(b)]]
        pairs += [(0, a, b) for a in paths for b in paths if a < b and labels[paths.index(a)] != labels[paths.index(b)]]
        (tmp_path / f"{name}.txt").write_text("".join(f"{k} {a.name} {b.name}\n" for k, a, b in pairs))
    domains = [(tmp_path / "one.txt", root), (tmp_path / "two.txt", root)]
    report: dict = {}
    target = fuse(two_models, paths, labels, tmp_path / "fit.fusion.json", domains=domains, report=report, progress=False, runtime="keras")
    weights = [m["weight"] for m in json.loads(target.read_text())["members"]]
    assert sum(weights) == pytest.approx(1) and set(report) == {str(d) for d, _ in domains}
    with pytest.raises(ConfigError, match="not both"):
        fuse(two_models, paths, labels, tmp_path / "x.fusion.json", weights=[1, 1], domains=domains, progress=False)
    with pytest.raises(ConfigError, match="two or more different domains"):
        fuse(two_models, paths, labels, tmp_path / "x.fusion.json", domains=domains[:1], progress=False)
    by_speaker = tmp_path / "by_speaker"
    for path, label in zip(paths, labels):
        (by_speaker / f"s{label}").mkdir(parents=True, exist_ok=True)
        (by_speaker / f"s{label}" / path.name).write_bytes(path.read_bytes())
    made = cli_in_process(
        capsys, "fuse", *two_models, tmp_path / "cli.fusion.json", "--audio-dir", by_speaker, "--quiet",
        "--fit-weights", domains[0][0], root, "--fit-weights", domains[1][0], root,
    )  # fmt: skip
    assert made.returncode == 0 and made.stdout.count("held out: EER") == 2
    assert f"weights {weights[0]:.3f}, {weights[1]:.3f}" in made.stdout
