import numpy as np
import pytest

from deep_speaker.errors import CalibrationError, ConfigError
from deep_speaker.model_home import user_home
from deep_speaker.scoring import CosineScorer, all_pairs_eer, build_scorer, load_scorer, save_scorer
from deep_speaker.scoring.backends import ASNormScorer, CenteredCosineScorer, PLDAScorer, SNormScorer


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path))


def test_cosine_matrix_pairs_and_single_agree():
    rng = np.random.default_rng(0)
    enroll, test = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    scorer = CosineScorer()
    matrix = scorer.score_matrix(enroll, test)
    expected = (enroll / np.linalg.norm(enroll, axis=1, keepdims=True)) @ (test / np.linalg.norm(test, axis=1, keepdims=True)).T
    np.testing.assert_allclose(matrix, expected, atol=1e-12)
    np.testing.assert_allclose(scorer.score_pairs(enroll, test), np.diag(matrix), atol=1e-12)
    assert scorer.score(enroll[1], test[2]) == pytest.approx(matrix[1, 2])
    assert scorer.score([3, 4], [6, 8]) == pytest.approx(1.0) and scorer.score([1, 0], [0, 1]) == 0.0


def _speakers(count: int, per_speaker: int, seed: int, nuisance: float = 0.0, hubs: float = 0.0):
    """Embeddings of `count` speakers: identity in 16 dims, session noise of size `nuisance` in 16 others,
    and a shared direction whose weight differs per speaker (`hubs`: some speakers score high with everyone)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(count), per_speaker)
    identity = np.zeros((count, 33))
    identity[:, :16] = rng.standard_normal((count, 16))
    identity[:, 32] = hubs * rng.uniform(0, 1, count) * 4
    x = identity[labels] + 0.4 * rng.standard_normal((labels.size, 33))
    x[:, 16:32] += nuisance * rng.standard_normal((labels.size, 16))
    return x, labels


def _eer(scorer, x, labels):
    return all_pairs_eer(scorer.score_matrix(x, x), labels)


def test_plda_learns_to_ignore_session_variability():
    train_x, train_y = _speakers(60, 10, seed=1, nuisance=2.0)
    test_x, test_y = _speakers(20, 6, seed=2, nuisance=2.0)  # unseen speakers
    cosine, plda = _eer(CosineScorer(), test_x, test_y), _eer(PLDAScorer(lda_dim=20).fit(train_x, train_y), test_x, test_y)
    assert plda < cosine - 0.05, (plda, cosine)


def test_as_norm_and_centering_tame_hub_speakers():
    train_x, train_y = _speakers(60, 10, seed=3, hubs=1.0)
    test_x, test_y = _speakers(20, 6, seed=4, hubs=1.0)
    cosine = _eer(CosineScorer(), test_x, test_y)
    asnorm = _eer(ASNormScorer(top_n=20).fit(train_x, train_y), test_x, test_y)
    centered = _eer(CenteredCosineScorer().fit(train_x, train_y), test_x, test_y)
    assert asnorm < cosine / 2 and centered < cosine / 2, (asnorm, centered, cosine)


def _domain(count: int, per_speaker: int, seed: int, shift: float):
    """Speakers of one domain: every recording shares a domain direction of weight `shift` (one language, channel or
    phrase makes impostors score higher together)."""
    x, labels = _speakers(count, per_speaker, seed)
    x[:, 16] += shift
    return x, labels


def _impostor_and_target_scores(scorer, x, labels):
    scores = scorer.score_matrix(x, x)
    upper = np.triu(np.ones_like(scores, dtype=bool), 1)
    same = labels[:, None] == labels[None, :]
    return scores[upper & ~same], scores[upper & same]


def test_snorm_with_an_in_domain_cohort_keeps_the_false_accept_rate_of_a_threshold_across_domains():
    home_x, home_y = _domain(40, 8, seed=7, shift=0.0)
    away_x, away_y = _domain(40, 8, seed=8, shift=3.0)  # impostors here score far higher by cosine
    rates = {}
    for name in ("cosine", "snorm"):
        home = build_scorer(name).fit(home_x) if name == "snorm" else CosineScorer()
        away = build_scorer(name).fit(away_x) if name == "snorm" else CosineScorer()  # the cohort: the domain's own recordings, no labels
        threshold = np.quantile(_impostor_and_target_scores(home, home_x, home_y)[0], 0.99)  # far1 at home
        impostors, targets = _impostor_and_target_scores(away, away_x, away_y)
        rates[name] = (np.mean(impostors >= threshold), np.mean(targets < threshold))
    assert rates["cosine"][0] > 0.1, rates  # the home threshold lets a tenth or more of the impostors in away
    assert 0.002 <= rates["snorm"][0] <= 0.03 and rates["snorm"][1] < 0.5, rates


def test_snorm_leaves_the_scored_recording_out_of_its_own_cohort_and_needs_a_real_cohort():
    x, labels = _speakers(10, 4, seed=9)
    scorer = SNormScorer().fit(x)  # no labels
    mean, std = scorer._cohort_statistics(x[:1])
    expected = (x[1:] / np.linalg.norm(x[1:], axis=1, keepdims=True)) @ (x[0] / np.linalg.norm(x[0]))
    assert mean[0] == pytest.approx(expected.mean()) and std[0] == pytest.approx(expected.std())
    with pytest.raises(ConfigError, match="at least 20 recordings"):
        SNormScorer().fit(x[:19])
    assert len(SNormScorer(max_cohort=25).fit(x).state["cohort"]) == 25


@pytest.mark.parametrize("name", ["centered", "asnorm", "snorm", "plda"])
def test_fitted_back_ends_save_and_load_keyed_to_the_model(name):
    x, y = _speakers(10, 4, seed=5)
    scorer = build_scorer(name).fit(x, y)
    path = save_scorer(scorer, "model-a")
    assert path == user_home("model-a") / f"{name}.npz"
    loaded = load_scorer(name, "model-a")
    np.testing.assert_allclose(loaded.score_matrix(x[:3], x[3:6]), scorer.score_matrix(x[:3], x[3:6]))
    with pytest.raises(CalibrationError, match=f"no {name} back end fitted for model model-b"):
        load_scorer(name, "model-b")
    path.write_bytes(b"not numpy")
    with pytest.raises(CalibrationError, match="not a readable back-end file"):
        load_scorer(name, "model-a")


def test_a_shipped_back_end_is_found_when_the_user_has_none_and_an_old_one_moves_home(tmp_path, monkeypatch):
    from deep_speaker import model_home
    from deep_speaker.fileio import toolkit_home

    monkeypatch.setattr(model_home, "SHIPPED_HOMES", tmp_path / "homes")
    x, y = _speakers(10, 4, seed=6)
    shipped = save_scorer(build_scorer("asnorm").fit(x, y), "shipped-model", tmp_path / "homes")
    assert shipped == tmp_path / "homes" / "shipped-model" / "asnorm.npz" and not user_home("shipped-model").exists()
    np.testing.assert_allclose(
        load_scorer("asnorm", "shipped-model").score_matrix(x[:2], x[2:4]), build_scorer("asnorm").fit(x, y).score_matrix(x[:2], x[2:4])
    )
    old = toolkit_home() / "backends" / "old-model.centered.npz"  # where a back end was saved before model homes
    old.parent.mkdir(parents=True, exist_ok=True)
    save_scorer(build_scorer("centered").fit(x, y), "old-model").replace(old)
    assert load_scorer("centered", "old-model").name == "centered"
    assert not old.exists() and (user_home("old-model") / "centered.npz").is_file()


def test_unfitted_unknown_and_bad_options_are_refused():
    with pytest.raises(ConfigError, match="not fitted"):
        ASNormScorer().score([1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ConfigError, match="unknown scorer 'lda'"):
        build_scorer("lda")
    with pytest.raises(ConfigError, match="top_n must be at least 2"):
        ASNormScorer(top_n=1)
    assert isinstance(load_scorer("cosine", "any"), CosineScorer)
