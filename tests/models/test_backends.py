"""Every model family runs on the JAX backend as on TensorFlow (the layers use keras.ops only): one small model of
each family and the two shipped models are saved here, loaded and run in a JAX process
(tests/models/backend_outputs.py), and their outputs compared with TensorFlow's."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import ROOT
from tests.models.backend_outputs import load_all_models, run_models


def _speaker_model(backbone: str, features, **options):
    from deep_speaker.models import build_backbone, build_speaker_model

    return build_speaker_model(build_backbone(backbone, features.num_fbanks, **options), features)


def _toolkit_models() -> dict[str, keras.Model]:
    """One small model of each family, with the front ends and heads users combine them with."""
    from deep_speaker.features import FeatureConfig
    from deep_speaker.models.advgan import build_perturbation_generator, build_waveform_discriminator
    from deep_speaker.models.again_vc import build_again_vc
    from deep_speaker.models.detector import build_detector
    from deep_speaker.models.ensemble import build_ensemble
    from deep_speaker.models.heads import build_head
    from deep_speaker.models.speaker_model import backbone_of, build_fused

    reference = FeatureConfig()  # the original's features: linear energies, per-frame normalisation
    log_utterance = FeatureConfig(num_fbanks=80, energies="log", normalisation="utterance")
    keras.utils.set_random_seed(0)
    rescnn = _speaker_model("rescnn", reference, width=0.125, embedding_dim=32)
    ecapa = _speaker_model("ecapa_tdnn", log_utterance, width=0.125, embedding_dim=32)
    return {
        "rescnn": rescnn,
        "rescnn_tdnn_head": build_fused(rescnn, build_head("tdnn", backbone_of(rescnn), channels=32, embedding_dim=16), fusion="concat"),
        "ecapa_tdnn": ecapa,
        "xvector": _speaker_model("xvector", log_utterance, width=0.125, embedding_dim=32),
        "ge2e": _speaker_model("ge2e", FeatureConfig(num_fbanks=40, kind="resemblyzer"), hidden=32, embedding_dim=32),
        "ensemble": build_ensemble([ecapa, _speaker_model("xvector", log_utterance, width=0.125, embedding_dim=32)]),
        "detector": build_detector(width=4),
        "again_vc": build_again_vc(channels=16, blocks=2),
        "advgan_generator": build_perturbation_generator(32, channels=8, depth=2),
        "advgan_discriminator": build_waveform_discriminator(channels=8),
    }


def _inputs(model: keras.Model, rng: np.random.Generator) -> list[np.ndarray]:
    """Two examples per input: 1.2 s of waveform, or 150 frames of features, where the length is free."""
    arrays = []
    for tensor in model.inputs:
        shape = [2] + [dim if dim is not None else (19200 if len(tensor.shape) == 2 else 150) for dim in tensor.shape[1:]]
        arrays.append((0.1 * rng.standard_normal(shape)).astype(np.float32))
    return arrays


@pytest.mark.slow
def test_every_model_family_gives_the_same_outputs_on_jax(tmp_path):
    rng = np.random.default_rng(0)
    inputs = {}
    load_all_models()
    shipped = {
        name: keras.saving.load_model(ROOT / "deep_speaker" / "pretrained" / f"{name}.keras")
        for name in ("deep_speaker", "ge2e_resemblyzer")
    }
    for name, model in {**_toolkit_models(), **shipped}.items():
        model.save(tmp_path / f"{name}.keras")
        inputs.update({f"{name}/{index}": array for index, array in enumerate(_inputs(model, rng))})
    np.savez(tmp_path / "inputs.npz", **inputs)
    on_tensorflow = run_models(tmp_path)
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, "-m", "tests.models.backend_outputs", str(tmp_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    on_jax = np.load(tmp_path / "outputs_jax.npz")
    assert sorted(on_jax) == sorted(on_tensorflow)
    for name, expected in on_tensorflow.items():
        assert on_jax[name].shape == expected.shape, name
        assert np.std(expected) > 1e-6, f"{name}: a constant output would compare equal on any backend"
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(on_jax[name], expected, atol=2e-4 * scale, err_msg=f"{name} differs on JAX")
