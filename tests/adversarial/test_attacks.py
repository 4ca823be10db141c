"""Attacks on the verifier with tiny models: they move the score the right way within their bounds."""

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.adversarial import AttackConfig, snr_db
from deep_speaker.adversarial.attacks import project, run_attack
from deep_speaker.assembly import attack
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import ConfigError
from deep_speaker.features import FeatureConfig
from tests.helpers import cli_in_process, save_tiny_model, synthetic_speech, tiny_model


@pytest.fixture(scope="module")
def encoder():
    import keras

    keras.utils.set_random_seed(0)  # the same tiny model whichever tests ran before
    return SpeakerEncoder(model=tiny_model(embedding_dim=16, features=FeatureConfig(energies="log", normalisation="utterance")))


@pytest.fixture(scope="module")
def pair(encoder):
    """An 'impostor' recording and a 'target' speaker's embedding (different pitch, other seed)."""
    return synthetic_speech(1.5, pitch=110, seed=1), encoder.embed(synthetic_speech(1.5, pitch=230, seed=2))


def test_the_gradient_is_the_pipeline_s(encoder, pair):
    from deep_speaker.tf.gradients import ScoreGradient

    # linear energies (log energies of quiet bands curve too sharply for a finite difference), and a selection
    # that cannot move under a small step
    plain = SpeakerEncoder(model=tiny_model(embedding_dim=16), trim="none")
    waveform, target = pair[0], plain.embed(synthetic_speech(1.5, pitch=230, seed=2))
    waveform = waveform + 0.01 * np.random.default_rng(1).standard_normal(waveform.size).astype(np.float32)  # no exact silence (log 0)
    oracle = ScoreGradient(plain, target)
    score, gradient = oracle(waveform)
    assert score == pytest.approx(float(plain.embed(waveform) @ target), abs=1e-5)
    noise = np.random.default_rng(0).standard_normal(waveform.size)
    for direction in (gradient, gradient + 0.5 * np.linalg.norm(gradient) * noise / np.linalg.norm(noise)):
        direction = (direction / np.linalg.norm(direction)).astype(np.float32)
        step = 1e-3
        numeric = (oracle(waveform + step * direction)[0] - oracle(waveform - step * direction)[0]) / (2 * step)
        assert float(gradient @ direction) == pytest.approx(numeric, rel=0.02)


@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd"])
def test_a_targeted_white_box_attack_raises_the_target_score_within_its_snr(encoder, pair, method):
    waveform, target = pair
    clean, result = attack(encoder, waveform, target, threshold=2.0, targeted=True, config=AttackConfig(method=method, snr_db=30, steps=10))
    assert result.score_after > result.score_before + 0.01
    assert snr_db(clean, result.waveform - clean) >= 30 - 0.5  # 16-bit rounding may cost a little
    assert np.all(np.abs(result.waveform) <= 1) and np.all(np.isfinite(result.waveform))
    assert result.steps == (1 if method == "fgsm" else 10) and not result.success  # a cosine never reaches 2


def test_an_untargeted_attack_gets_a_genuine_recording_rejected_and_stops_there(encoder, pair):
    waveform, _ = pair
    own = encoder.embed(waveform)
    threshold = float(own @ encoder.embed(waveform)) - 0.02
    clean, result = attack(encoder, waveform, own, threshold, targeted=False, config=AttackConfig(method="pgd", snr_db=30, steps=40))
    assert result.success and result.score_after < threshold and result.steps < 40


def test_an_l_inf_bound_holds_with_random_starts(encoder, pair):
    waveform, target = pair
    config = AttackConfig(method="pgd", snr_db=None, epsilon=0.002, steps=5, random_starts=2, seed=3)
    clean, result = attack(encoder, waveform, target, threshold=2.0, targeted=True, config=config)
    assert np.max(np.abs(result.waveform - clean)) <= 0.002 + 1 / 32767 and result.score_after > result.score_before


def test_nes_needs_only_scores_and_counts_its_queries(encoder, pair):
    waveform, target = pair
    config = AttackConfig(method="nes", snr_db=25, steps=4, nes_samples=8, nes_sigma=0.005, seed=1)
    clean, result = attack(encoder, waveform, target, threshold=2.0, targeted=True, config=config)
    assert result.score_after > result.score_before
    assert result.queries == 1 + 4 * (1 + 2 * 8) + 1 + 1  # before, per step (score + 2 per pair), last, as written
    with pytest.raises(ConfigError, match="pgd is a white-box attack"):
        run_attack(waveform, lambda w: 0.0, 0.5, True, AttackConfig(method="pgd"))


def test_projection_keeps_every_bound():
    rng = np.random.default_rng(0)
    clean = np.clip(rng.standard_normal(8000) * 0.5, -1, 1).astype(np.float32)
    delta = rng.standard_normal(8000).astype(np.float32)
    bounded = project(delta, clean, AttackConfig(snr_db=20, epsilon=0.05))
    assert np.max(np.abs(bounded)) <= 0.05 + 1e-7 and np.all(np.abs(clean + bounded) <= 1 + 1e-7)
    assert snr_db(clean, bounded) >= 20 - 1e-4
    with pytest.raises(ConfigError, match="needs a bound"):
        AttackConfig(snr_db=None, epsilon=None).check()
    with pytest.raises(ConfigError, match="unknown attack 'cw'"):
        AttackConfig(method="cw").check()


def test_the_attack_command_writes_valid_audio_and_reports(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "tiny.keras")
    sf.write(tmp_path / "impostor.wav", synthetic_speech(1.5, pitch=110, seed=1), 16000)
    sf.write(tmp_path / "target.wav", synthetic_speech(1.5, pitch=230, seed=2), 16000)
    done = cli_in_process(
        capsys,
        "attack",
        tmp_path / "impostor.wav",
        tmp_path / "adv.wav",
        "--target-file",
        tmp_path / "target.wav",
        "--checkpoint_file",
        model,
        "--threshold",
        "0.99",
        "--steps",
        "3",
        "--store",
        tmp_path / "s.db",
    )
    assert done.returncode == 0, done.stderr
    assert "pgd: score" in done.stdout and "failed to be accepted as" in done.stdout and "SNR" in done.stdout
    audio, rate = sf.read(tmp_path / "adv.wav")
    assert rate == 16000 and audio.shape == synthetic_speech(1.5).shape
    mp3 = cli_in_process(
        capsys,
        "attack",
        tmp_path / "impostor.wav",
        tmp_path / "adv.mp3",
        "--target-file",
        tmp_path / "target.wav",
        "--checkpoint_file",
        model,
        "--threshold",
        "0.99",
        "--store",
        tmp_path / "s.db",
    )
    assert mp3.returncode == 2 and "adv.mp3: audio is written as .wav or .flac" in mp3.stderr  # refused before the attack runs
    neither = cli_in_process(capsys, "attack", tmp_path / "impostor.wav", tmp_path / "x.wav", "--checkpoint_file", model)
    assert neither.returncode == 2 and "one of the arguments --target-speaker" in neither.stderr
