import json

import numpy as np
import pytest

from deep_speaker.errors import CalibrationError
from deep_speaker.scoring.calibration import Calibration, beside, find_calibration, probability, save_calibration


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_SPEAKER_HOME", str(tmp_path / "home"))


def test_thresholds_meet_their_false_accept_rates():
    rng = np.random.default_rng(0)
    target, nontarget = rng.normal(0.5, 0.15, 500), rng.normal(0.2, 0.15, 20000)  # EER about 16 %
    calibration = Calibration.from_scores(target, nontarget, "trials.txt", model="abc")
    assert calibration.eer < calibration.far1 < calibration.far0_1
    assert np.mean(nontarget >= calibration.far1) <= 0.01 and np.mean(nontarget >= calibration.far0_1) <= 0.001
    assert calibration.threshold("far1") == calibration.far1


def test_llr_recovers_the_true_likelihood_ratio_of_gaussian_scores():
    """Equal-variance Gaussians N(mu_t, sd), N(mu_n, sd): the true LLR is (mu_t - mu_n) / sd^2 * (s - (mu_t + mu_n) / 2)."""
    rng = np.random.default_rng(1)
    target, nontarget = rng.normal(0.5, 0.1, 2000), rng.normal(0.2, 0.1, 20000)
    calibration = Calibration.from_scores(target, nontarget, model="abc")
    assert calibration.llr_scale == pytest.approx(30.0, rel=0.1)
    assert calibration.llr(0.35) == pytest.approx(0.0, abs=0.3)
    assert calibration.llr(0.5) == pytest.approx(4.5, abs=0.5)
    assert probability(calibration.llr(0.5)) > 0.98 and probability(calibration.llr(0.2)) < 0.02
    assert probability(0.0, prior=0.01) == pytest.approx(0.01)


def test_an_old_file_without_llr_reads_and_reports_none(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"eer": 0.3, "far1": 0.5, "far0_1": 0.7, "eer_percent": 9.0, "trials": "t", "model": "abc"}))
    assert Calibration.read(path).llr(0.5) is None


def test_found_by_fingerprint_wherever_the_checkpoint_goes(tmp_path):
    calibration = Calibration(0.3, 0.5, 0.7, 9.0, "t", model="abc")
    checkpoint = tmp_path / "m.keras"
    paths = save_calibration(calibration, checkpoint)
    assert beside(checkpoint) in paths
    assert find_calibration("abc", checkpoint) == calibration
    assert find_calibration("abc", tmp_path / "elsewhere" / "copy.keras") == calibration
    assert find_calibration("other", checkpoint) is None


def test_a_stale_file_beside_the_checkpoint_is_ignored_and_an_old_unkeyed_one_is_used(tmp_path):
    checkpoint = tmp_path / "m.keras"
    beside(checkpoint).write_text(json.dumps({"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 5, "trials": "t", "model": "old"}))
    assert find_calibration("new", checkpoint) is None
    beside(checkpoint).write_text(json.dumps({"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 5, "trials": "t"}))
    assert find_calibration("new", checkpoint).far1 == 0.2


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"eer": "high"}',
        '["a"]',
        '{"eer": 0.1, "far1": true, "far0_1": 0.3, "eer_percent": 1, "trials": ""}',
        '{"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": "abc", "trials": ""}',
        '{"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 1, "trials": "", "model": [1]}',
        '{"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 1, "trials": "", "llr_scale": 1e308, "llr_offset": 0}',
        '{"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 1, "trials": "", "extra": 1}',
        '{"eer": NaN, "far1": 1, "far0_1": 1, "eer_percent": 1, "trials": ""}',
        '{"eer": 0.1, "far1": 0.2, "far0_1": 0.3, "eer_percent": 1, "trials": "", "llr_scale": "steep", "llr_offset": 0}',
    ],
)
def test_corrupt_files_are_one_clear_error(tmp_path, text):
    checkpoint = tmp_path / "m.keras"
    beside(checkpoint).write_text(text)
    with pytest.raises(CalibrationError, match="m.keras.calibration.json: not a readable calibration file"):
        find_calibration("abc", checkpoint)


def test_too_few_trials_are_refused_with_the_reason():
    with pytest.raises(CalibrationError, match="1 target and 1 non-target trials; calibration needs at least 50 and 1000"):
        Calibration.from_scores([0.9], [0.1], "tiny.txt", model="abc")


def test_replaced_calibrations_are_backed_up_and_shipped_ones_need_force(tmp_path, monkeypatch):
    import deep_speaker.scoring.calibration as calibration_module

    first, second = Calibration(0.3, 0.5, 0.7, 9.0, "t", model="abc"), Calibration(0.2, 0.4, 0.6, 8.0, "t2", model="abc")
    checkpoint = tmp_path / "mine.keras"
    save_calibration(first, checkpoint)
    with pytest.raises(CalibrationError, match=r"model abc already has a calibration for cosine scores .*from t\); replacing it changes"):
        save_calibration(second, checkpoint)  # an existing operating point is never replaced silently
    assert find_calibration("abc", checkpoint) == first
    save_calibration(second, checkpoint, force=True)
    assert find_calibration("abc", checkpoint) == second
    backups = sorted(tmp_path.rglob("*.bak"))
    assert len(backups) == 2 and all(Calibration.read(b) == first for b in backups)

    shipped_dir = tmp_path / "pretrained"
    shipped_dir.mkdir()
    monkeypatch.setattr(calibration_module, "PRETRAINED_DIR", shipped_dir.resolve())
    shipped = shipped_dir / "model.keras"
    third = Calibration(0.2, 0.4, 0.6, 8.0, "t3", model="new")
    paths = save_calibration(third, shipped)
    assert beside(shipped) not in paths and not beside(shipped).exists()
    assert beside(shipped) in save_calibration(third, shipped, force=True)


def test_a_shipped_calibration_is_not_shadowed_without_force(tmp_path, monkeypatch, capsys):
    import deep_speaker.scoring.calibration as calibration_module
    from tests.helpers import save_tiny_model

    checkpoint = save_tiny_model(tmp_path / "pretrained" / "model.keras")
    from deep_speaker.embedding import SpeakerEncoder

    fingerprint = SpeakerEncoder(checkpoint).fingerprint
    shipped = Calibration(0.2, 0.4, 0.6, 8.0, "shipped trials", model=fingerprint)
    beside(checkpoint).write_text(json.dumps(shipped.__dict__))
    monkeypatch.setattr(calibration_module, "PRETRAINED_DIR", checkpoint.parent.resolve())
    with pytest.raises(
        CalibrationError, match=r"already has a calibration for cosine scores \(.*model.keras.calibration.json, from shipped trials\)"
    ):
        save_calibration(Calibration(0.3, 0.5, 0.7, 9.0, "mine", model=fingerprint), checkpoint)
    assert find_calibration(fingerprint, checkpoint) == shipped


def test_calibrations_live_in_the_model_home_shipped_homes_are_read_and_old_ones_move_home(tmp_path, monkeypatch):
    from deep_speaker import model_home
    from deep_speaker.fileio import toolkit_home

    mine = Calibration(0.3, 0.5, 0.7, 9.0, "t", model="abc", scorer="asnorm")
    assert save_calibration(mine) == [model_home.user_home("abc") / "calibration.asnorm.json"]
    monkeypatch.setattr(model_home, "SHIPPED_HOMES", tmp_path / "homes")
    shipped = Calibration(0.2, 0.4, 0.6, 8.0, "shipped", model="def", seconds=1.5)
    (tmp_path / "homes" / "def").mkdir(parents=True)
    (tmp_path / "homes" / "def" / "calibration.1.5s.json").write_text(json.dumps(shipped.__dict__))
    assert find_calibration("def", seconds=1.5) == shipped and find_calibration("def") is None
    with pytest.raises(CalibrationError, match="already has a calibration"):
        save_calibration(Calibration(0.1, 0.2, 0.3, 8.0, "mine", model="def", seconds=1.5))  # shipped: only with force
    old = toolkit_home() / "calibration" / "ghi.json"  # where the user's calibrations were kept before model homes
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(json.dumps(Calibration(0.2, 0.4, 0.6, 8.0, "old", model="ghi").__dict__))
    assert find_calibration("ghi").trials == "old" and not old.exists()
    assert (model_home.user_home("ghi") / "calibration.json").is_file()
