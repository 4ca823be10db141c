"""AdvGAN on tiny models: the bound holds by construction, training raises the target's score and resumes."""

import json

import keras
import numpy as np
import pytest

from deep_speaker.adversarial import AttackConfig, snr_db
from deep_speaker.assembly import attack
from deep_speaker.audio import read_audio
from deep_speaker.checkpoints import save_model
from deep_speaker.config import load_recipe
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.features import FeatureConfig
from deep_speaker.models.advgan import build_perturbation_generator, build_waveform_discriminator, load_generator, perturb, snr_of
from deep_speaker.tf.advgan import train_advgan
from tests.helpers import cli_in_process, save_tiny_model, synthetic_speech, tiny_model, write_corpus


@pytest.fixture(scope="module")
def encoder():
    keras.utils.set_random_seed(0)
    return SpeakerEncoder(model=tiny_model(embedding_dim=16, features=FeatureConfig(energies="log", normalisation="utterance")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("advgan") / "corpus", speakers=3, utterances=2)


def test_the_generator_meets_its_snr_at_any_length_and_round_trips(tmp_path):
    generator = build_perturbation_generator(16, snr_db=25.0)
    rng = np.random.default_rng(0)
    for samples in (1600, 8000, 24160):
        clean = (0.1 * rng.standard_normal((2, samples))).astype("float32")
        delta = keras.ops.convert_to_numpy(generator([clean, rng.standard_normal((2, 16)).astype("float32")]))
        assert delta.shape == clean.shape
        assert [snr_db(c, d) for c, d in zip(clean, delta)] == pytest.approx([25.0, 25.0], abs=0.01)
    save_model(generator, tmp_path / "g.keras")
    loaded = load_generator(tmp_path / "g.keras")
    assert snr_of(loaded) == 25.0 and len(loaded.weights) == len(generator.weights)
    with pytest.raises(CheckpointError, match="not an AdvGAN generator"):
        load_generator(save_tiny_model(tmp_path / "speaker.keras"))
    logits = build_waveform_discriminator()(np.zeros((3, 3200), "float32"))
    assert logits.shape == (3, 1)


@pytest.mark.slow
def test_training_raises_the_target_score_and_a_finished_run_is_kept(encoder, corpus, tmp_path):
    recipe = load_recipe("advgan", epochs=3, steps_per_epoch=10, batch_size=4, snr_db=10.0, seconds=1.0, per_speaker=2)
    out = train_advgan(tmp_path, corpus, encoder, recipe, progress=False)
    assert out == tmp_path / "advgan" / "best.keras" and len((tmp_path / "advgan" / "training.csv").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "advgan" / "verifier.json").read_text())["verifier"] == encoder.fingerprint
    keras.utils.set_random_seed(0)  # the generator training started from (the recipe's seed)
    untrained, trained = build_perturbation_generator(16, snr_db=10.0), load_generator(out)
    pairs = [
        (read_audio(a), encoder.embed(b))
        for a in sorted(corpus.rglob("*.flac"))
        for b in sorted(corpus.rglob("*.flac"))
        if a.parent != b.parent
    ]

    def mean_score(generator):
        return np.mean([encoder.embed(np.clip(clean + perturb(generator, clean, target), -1, 1)) @ target for clean, target in pairs])

    assert mean_score(trained) > mean_score(untrained)
    weights = [w.copy() for w in trained.get_weights()]
    train_advgan(tmp_path, corpus, encoder, recipe, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(weights, load_generator(out).get_weights()))  # resumed at the end: nothing to do


def test_an_advgan_attack_stays_within_its_bound_and_needs_a_generator(encoder):
    generator = build_perturbation_generator(16, snr_db=30.0)
    waveform, target = synthetic_speech(1.5, pitch=110, seed=1), encoder.embed(synthetic_speech(1.5, pitch=230, seed=2))
    clean, result = attack(encoder, waveform, target, 2.0, True, AttackConfig("advgan", snr_db=35.0), generator)
    assert snr_db(clean, result.waveform - clean) >= 35 - 0.5  # the request's tighter bound wins
    assert np.all(np.abs(result.waveform) <= 1) and result.steps == 1 and not result.success
    with pytest.raises(ConfigError, match="generator"):
        attack(encoder, waveform, target, 2.0, True, AttackConfig("advgan"))
    with pytest.raises(ConfigError, match="target speaker"):
        attack(encoder, waveform, target, 2.0, False, AttackConfig("advgan"), generator)


def test_attack_command_with_advgan_asks_for_the_generator(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "m.keras")
    import soundfile as sf

    sf.write(tmp_path / "a.wav", synthetic_speech(1.5, pitch=110), 16000)
    result = cli_in_process(
        capsys,
        "attack",
        tmp_path / "a.wav",
        tmp_path / "out.wav",
        "--method",
        "advgan",
        "--target-file",
        tmp_path / "a.wav",
        "--checkpoint_file",
        model,
        "--threshold",
        "0.9",
    )
    assert result.returncode != 0 and "--generator" in result.stderr and not (tmp_path / "out.wav").exists()


def test_a_bad_recipe_is_refused_before_any_recording_is_read(encoder, corpus, tmp_path):
    with pytest.raises(ConfigError, match="snr_db must be in"):
        train_advgan(tmp_path, corpus, encoder, load_recipe("advgan", snr_db=-5.0), progress=False)
    with pytest.raises(ConfigError, match="selects its best epoch by val_score"):
        load_recipe("advgan", select_by="val_eer")
    assert not (tmp_path / "advgan").exists()
