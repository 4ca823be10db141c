"""The spoof corpus, the detector trained by the training driver, and the detector as the verifier's gate."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.adversarial.detector import SpoofDetector, threshold_path
from deep_speaker.adversarial.spoofs import build_spoof_corpus, read_manifest
from deep_speaker.assembly import attack
from deep_speaker.config import load_recipe
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.verification import Verifier
from tests.helpers import cli_in_process, synthetic_speech, tiny_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six synthetic speakers, four recordings each, and their FGSM and WORLD spoofs against a tiny model."""
    root = tmp_path_factory.mktemp("spoofs")
    recordings = []
    for speaker in range(6):
        for index in range(4):
            path = root / "genuine" / f"spk{speaker}" / f"utt{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synthetic_speech(2.0 + 0.2 * index, pitch=90 + 30 * speaker, seed=index), 16000)
            recordings.append((path, f"spk{speaker}"))
    encoder = SpeakerEncoder(model=tiny_model())
    manifest = build_spoof_corpus(
        recordings, root / "out", encoder, threshold=0.99, families=("fgsm", "world"), per_family=12, progress=False, attack=attack
    )
    return manifest, encoder


@pytest.mark.slow
def test_the_spoof_corpus_lists_every_recording_and_resumes(corpus):
    manifest, encoder = corpus
    rows = read_manifest(manifest)
    assert sum(family == "genuine" for _, _, family in rows) == 24
    assert sum(family == "fgsm" for _, _, family in rows) == 12 and sum(family == "world" for _, _, family in rows) == 12
    spoof = next(path for path, _, family in rows if family == "fgsm")
    audio, rate = sf.read(spoof)
    assert rate == 16000 and np.all(np.abs(audio) <= 1)
    stamp = (manifest.parent / "fgsm").stat().st_mtime_ns
    recordings = [(p, s) for p, s, f in rows if f == "genuine"]
    build_spoof_corpus(
        recordings, manifest.parent, encoder, 0.99, families=("fgsm", "world"), per_family=12, progress=False, attack=attack
    )  # all exist: nothing redone
    assert (manifest.parent / "fgsm").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="unknown spoof families"):
        build_spoof_corpus(recordings, manifest.parent, encoder, 0.99, families=("deepfake",))
    with pytest.raises(ConfigError, match=r"spoof families \['fgsm'\] attack the verifier: give attack"):  # not skipped file by file
        build_spoof_corpus(recordings, manifest.parent, encoder, 0.99, families=("fgsm",))


@pytest.fixture(scope="module")
def toy_manifest(tmp_path_factory):
    """Six synthetic speakers, four recordings each, and each recording with a sign-noise perturbation at 10 dB
    SNR (an FGSM-like pattern well above the toy voices' noise floor)."""
    from deep_speaker.fileio import atomic_write_csv

    root = tmp_path_factory.mktemp("toy_spoofs")
    rng = np.random.default_rng(0)
    rows = []
    for speaker in range(6):
        for index in range(4):
            clean = synthetic_speech(2.0 + 0.2 * index, pitch=90 + 30 * speaker, seed=index)
            attacked = np.clip(clean + np.sqrt(np.mean(clean**2)) * 10 ** (-10 / 20) * np.sign(rng.standard_normal(clean.size)), -1, 1)
            for family, waveform in (("genuine", clean), ("sign_noise", attacked)):
                path = root / family / f"spk{speaker}" / f"utt{index}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, waveform, 16000)
                rows.append((str(path), f"spk{speaker}", family))
    atomic_write_csv(root / "manifest.csv", ["path", "speaker", "family"], rows)
    return root / "manifest.csv"


@pytest.mark.slow
def test_the_detector_separates_a_toy_set_and_gates_the_verifier(toy_manifest, tmp_path, capsys):
    from deep_speaker.tf.train import train_detector

    recipe = load_recipe(
        "detector", epochs=6, steps_per_epoch=12, batch_size=8, num_frames=100, early_stopping_patience=6, validation_fraction=0.34
    )
    best = train_detector(tmp_path, toy_manifest, recipe, progress=False)
    assert best.is_file() and threshold_path(best).is_file()
    log = list(csv.DictReader((tmp_path / "detector" / "training.csv").open()))
    assert min(float(row["val_eer"]) for row in log) < 0.25
    detector = SpoofDetector(best)
    rows = read_manifest(toy_manifest)
    genuine = [p for p, _, f in rows if f == "genuine"]
    # the threshold: 1 % of the validation speakers' genuine recordings, scored whole as the gate scores them
    from deep_speaker.data.detection import validation_speakers

    held = validation_speakers(rows, recipe.run.validation_fraction, recipe.run.seed)
    held_genuine = [p for p, s, f in rows if f == "genuine" and s in held]
    assert json.loads(threshold_path(best).read_text())["genuine_recordings"] == len(held_genuine) == 8
    assert sum(detector(p) is not None for p in held_genuine) <= 1
    attacked = [p for p, _, f in rows if f == "sign_noise"]
    assert np.mean([detector.score(p) for p in attacked]) > np.mean([detector.score(p) for p in genuine])
    encoder = SpeakerEncoder(model=tiny_model())
    gated = Verifier(encoder, threshold=-1.0, spoof_gate=SpoofDetector(best, threshold=-1e9))  # flags everything
    decision = gated.verify(genuine[0], genuine[1])
    assert decision.accepted is False and "looks spoofed or adversarial" in decision.reason
    shown = cli_in_process(capsys, "detect", attacked[0], "--detector", best)
    assert shown.returncode == 0 and "score" in shown.stdout and ("spoof" in shown.stdout or "genuine" in shown.stdout)


def test_a_speaker_model_is_not_a_detector(tmp_path):
    from tests.helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny.keras")
    with pytest.raises(CheckpointError, match="not a spoof detector"):
        SpoofDetector(model, threshold=0.0)


def test_threshold_files_that_are_broken_hand_written_or_for_other_weights_are_refused(tmp_path, capsys):
    import keras

    from deep_speaker.adversarial.detector import save_threshold
    from deep_speaker.errors import TrainingError
    from deep_speaker.models.detector import build_detector

    detector = build_detector()
    path = tmp_path / "detector.keras"
    keras.saving.save_model(detector, path)
    with pytest.raises(TrainingError, match=r"detector.keras: the detector scores the 5 genuine validation recordings alike"):
        save_threshold(path, detector, [0.0] * 5)  # what an untrained detector does
    assert not threshold_path(path).exists()
    for content, problem in (
        ("{not json", "not a readable detector threshold file"),
        ("{}", "no finite number under 'threshold' \\(found None\\)"),
        ('{"threshold": "abc"}', "no finite number under 'threshold' \\(found 'abc'\\)"),
        ("[1, 2]", "no finite number under 'threshold'"),
        ('{"threshold": 0.0, "weights": "0123456789abcdef"}', "this threshold was not set for the weights of"),
        ('{"threshold": 0.0}', "this threshold was not set for the weights of"),  # written by hand beside untrained weights
    ):
        threshold_path(path).write_text(content)
        with pytest.raises(CheckpointError, match=rf"detector.keras.detector.json: {problem}"):
            SpoofDetector(path)
        refused = cli_in_process(capsys, "detect", path, "--detector", path)
        assert refused.returncode == 2 and problem.split("\\")[0] in refused.stderr and "Traceback" not in refused.stderr
    written = save_threshold(path, detector, np.linspace(-3, 1, 101))
    assert SpoofDetector(path).threshold == pytest.approx(written) == pytest.approx(0.96)
