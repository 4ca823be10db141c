import gzip
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from deep_speaker.checkpoints import save_model
from deep_speaker.errors import CheckpointError
from deep_speaker.features import FeatureConfig, compute_features
from deep_speaker.layers import FeatureSpec
from deep_speaker.model_files import load_model
from deep_speaker.models import build_backbone, feature_config_of, feature_model
from deep_speaker.models.heads import build_dense_head
from deep_speaker.models.speaker_model import backbone_of, model_fingerprint
from tests.helpers import cli_in_process, run_cli, synthetic_speech, tiny_model

CASES = [("rescnn_triplet_layout.h5.gz", "triplet_embedding"), ("rescnn_softmax_layout.h5.gz", "softmax_embedding")]


def _unpacked(legacy_fixtures, name, tmp_path) -> Path:
    target = tmp_path / name.removesuffix(".gz")
    target.write_bytes(gzip.decompress((legacy_fixtures / name).read_bytes()))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("name,key", CASES)
def test_legacy_fixture_reproduces_keras2_output(legacy_fixtures, tmp_path, name, key):
    expected = np.load(legacy_fixtures / "rescnn_layout_expected.npz")
    for path in (legacy_fixtures / name, _unpacked(legacy_fixtures, name, tmp_path)):
        model = load_model(path)
        assert model.count_params() == 24_185_728 and model.output_shape == (None, 512)
        np.testing.assert_allclose(feature_model(model).predict(expected["x"][..., 0], verbose=0), expected[key], atol=1e-4)


def _edit(legacy_fixtures, tmp_path, edit) -> Path:
    path = _unpacked(legacy_fixtures, "rescnn_triplet_layout.h5.gz", tmp_path)
    with h5py.File(path, "r+") as h5:
        edit(h5["model_weights"])
    return path


def test_missing_layer_is_named(legacy_fixtures, tmp_path):
    def drop(group):
        names = [n for n in group.attrs["layer_names"] if n not in (b"res2_1_branch_2b", "res2_1_branch_2b")]
        group.attrs["layer_names"] = names
        del group["res2_1_branch_2b"]

    with pytest.raises(CheckpointError, match=r"1 layer\(s\) missing from the file: res2_1_branch_2b"):
        load_model(_edit(legacy_fixtures, tmp_path, drop))


def test_wrong_shape_is_named(legacy_fixtures, tmp_path):
    def reshape(group):
        layer = group["conv128-s_bn"]
        del layer["conv128-s_bn/gamma:0"]
        layer["conv128-s_bn/gamma:0"] = np.ones(64, np.float32)

    with pytest.raises(CheckpointError, match=r"conv128-s_bn \(model \[\(128,\).*file \[\(64,\)"):
        load_model(_edit(legacy_fixtures, tmp_path, reshape))


def test_weightless_layer_names_do_not_matter(legacy_fixtures, tmp_path):
    def rename(group):
        names = []
        for name in group.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            new_name = name.replace("add_", "plus_").replace("clipped_relu", "crelu")
            if new_name != name:
                group.move(name, new_name)
            names.append(new_name)
        group.attrs["layer_names"] = names

    model = load_model(_edit(legacy_fixtures, tmp_path, rename))
    assert backbone_of(model).get_layer("affine").kernel.shape == (2048, 512)


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"definitely not hdf5" * 10)
    with pytest.raises(CheckpointError, match="fake.h5: not an HDF5 checkpoint"):
        load_model(path)


def test_truncated_file(legacy_fixtures, tmp_path):
    full = _unpacked(legacy_fixtures, "rescnn_triplet_layout.h5.gz", tmp_path)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="truncated.h5"):
        load_model(truncated)


def test_keras3_weights_file_explains_itself(tmp_path):
    path = tmp_path / "model.weights.h5"
    build_backbone("rescnn", width=0.125).save_weights(path)
    with pytest.raises(CheckpointError, match="holds no architecture"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    for name in ("absent.h5", "absent.keras"):
        with pytest.raises(CheckpointError, match=f"{name}: no such checkpoint"):
            load_model(tmp_path / name)


def _version_0_1_model(features: dict, fused: bool = False) -> keras.Model:
    """What version 0.1 saved: feature-in (frames, 64, 1), `FeatureSpec`, ResCNN layers flat, maybe a fused head."""
    from deep_speaker.layers import EmbeddingFusion, L2Normalize, TemporalAverage
    from deep_speaker.models.rescnn import _conv_and_res_block, stage_filters
    from deep_speaker.models.speaker_model import weights_fingerprint

    inputs = keras.Input((None, 64, 1), name="input")
    x = FeatureSpec(features, name="features")(inputs)
    for stage, filters in enumerate(stage_filters(0.0625), start=1):
        x = _conv_and_res_block(x, filters, stage)
    x = keras.layers.Reshape((-1, 4 * x.shape[-1]), name="reshape")(x)
    embedding = L2Normalize(name="ln")(keras.layers.Dense(32, name="affine")(TemporalAverage(name="average")(x)))
    flat = keras.Model(inputs, embedding)
    if not fused:
        return flat
    head = build_dense_head(32, (16, 16), 8)
    fusion = EmbeddingFusion("concat", trained=True, base_fingerprint=weights_fingerprint(flat), name="fusion")
    return keras.Model(inputs, fusion([embedding, head(embedding)]))


@pytest.mark.slow
def test_version_0_1_feature_spec_files_load_and_behave_as_before(tmp_path):
    features = {"trim": "reference", "energies": "log", "normalisation": "utterance", "sample_rate": 16000, "num_fbanks": 64}
    for fused in (False, True):
        old = _version_0_1_model(features, fused)
        path = tmp_path / f"old_{fused}.keras"
        old.save(path)
        model = load_model(path)
        assert feature_config_of(model) == FeatureConfig.from_dict(features)
        signal = synthetic_speech(1.0)
        expected = old.predict(compute_features(signal, FeatureConfig.from_dict(features))[None, :, :, None], verbose=0)
        np.testing.assert_allclose(model.predict(signal[None], verbose=0), expected, atol=1e-5)
        save_model(model, tmp_path / "again.keras")
        assert model_fingerprint(load_model(tmp_path / "again.keras")) == model_fingerprint(model)


def test_keras_files_that_cannot_be_rebuilt_are_one_clear_error(tmp_path):
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("hello")
    with pytest.raises(CheckpointError, match="text.keras: not a Keras 3 .keras file"):
        load_model(not_zip)
    import zipfile

    unknown_class = tmp_path / "unknown.keras"
    with zipfile.ZipFile(unknown_class, "w") as archive:
        archive.writestr("config.json", '{"module": "evil", "class_name": "Payload", "config": {}}')
        archive.writestr("metadata.json", '{"keras_version": "3.15.1"}')
    with pytest.raises(CheckpointError, match="unknown.keras: cannot load Keras model"):
        load_model(unknown_class)


def test_saving_needs_the_keras_suffix(tmp_path):
    with pytest.raises(CheckpointError, match="out.h5: models are saved as Keras 3 files ending in .keras"):
        save_model(tiny_model(), tmp_path / "out.h5")


@pytest.mark.slow
def test_convert_checkpoint_cli(legacy_fixtures, tmp_path):
    target = tmp_path / "converted.keras"
    result = run_cli("convert-checkpoint", legacy_fixtures / "rescnn_softmax_layout.h5.gz", target)
    assert result.returncode == 0, result.stderr
    assert "24,185,728 weights" in result.stdout
    expected = np.load(legacy_fixtures / "rescnn_layout_expected.npz")
    converted = feature_model(load_model(target))
    np.testing.assert_allclose(converted.predict(expected["x"][..., 0], verbose=0), expected["softmax_embedding"], atol=1e-4)


def test_cli_reports_mismatched_checkpoint(legacy_fixtures, tmp_path, capsys):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"nope")
    result = cli_in_process(capsys, "convert-checkpoint", path, tmp_path / "out.keras")
    assert result.returncode == 2 and "bad.h5: not an HDF5 checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    wrong_target = cli_in_process(capsys, "convert-checkpoint", path, tmp_path / "out.h5")
    assert wrong_target.returncode == 2 and "out.h5: models are saved as Keras 3 files" in wrong_target.stderr


def test_tiny_files_declaring_giant_arrays_are_refused_before_allocating(tmp_path, monkeypatch):
    def legacy_file(path, affine_shape, extra=None):
        with h5py.File(path, "w") as h5:
            h5.attrs["layer_names"] = [b"affine"] + ([b"conv64-s"] if extra else [])
            group = h5.create_group("affine")
            group.attrs["weight_names"] = [b"affine/kernel:0", b"affine/bias:0"]
            group.create_dataset("affine/kernel:0", shape=affine_shape, dtype="f4", chunks=True)  # declared, never written
            group.create_dataset("affine/bias:0", shape=affine_shape[1:], dtype="f4")
            if extra:
                conv = h5.create_group("conv64-s")
                conv.attrs["weight_names"] = [b"conv64-s/kernel:0"]
                conv.create_dataset("conv64-s/kernel:0", shape=extra, dtype="f4", chunks=True)
        return path

    width_64 = legacy_file(tmp_path / "width64.h5", (4 * 512 * 64, 512))
    assert width_64.stat().st_size < 20_000
    with pytest.raises(CheckpointError, match="width64.h5: `affine` declares shape \\(131072, 512\\).*refused before building"):
        load_model(width_64)
    giant_conv = legacy_file(tmp_path / "giant.h5", (2048, 512), extra=(5, 5, 1, 10**8))
    with pytest.raises(CheckpointError, match=r"giant.h5: does not match the model.*conv64-s \(model \[\(5, 5, 1, 64\)"):
        load_model(giant_conv)
    bomb = tmp_path / "bomb.h5.gz"
    with gzip.open(bomb, "wb") as stream:
        stream.write(bytes(3 * 2**20))
    monkeypatch.setenv("DEEP_SPEAKER_MAX_CHECKPOINT_MB", "1")
    with pytest.raises(CheckpointError, match="bomb.h5.gz: decompresses to more than 1 MB"):
        load_model(bomb)


def test_a_bad_feature_recipe_inside_a_keras_file_is_one_clear_error(tmp_path):
    import json
    import zipfile

    good = tmp_path / "good.keras"
    save_model(tiny_model(), good)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(json.loads(data)).replace('"energies": "linear"', '"energies": "cubic"').encode()
            target.writestr(item, data)
    with pytest.raises(CheckpointError, match="bad.keras: cannot load Keras model.*cubic"):
        load_model(bad)


def test_a_planted_lambda_is_refused_and_never_runs(tmp_path):
    marker = str(tmp_path / "ran")
    inputs = keras.Input((None,))
    planted = keras.layers.Lambda(lambda x: x + float(bool(open(marker, "w").close() or 0)), name="payload")(inputs)
    keras.Model(inputs, planted).save(tmp_path / "planted.keras")
    Path(marker).unlink()
    with pytest.raises(CheckpointError, match="planted.keras: cannot load Keras model"):
        load_model(tmp_path / "planted.keras")
    assert not Path(marker).exists()


def test_a_legacy_checkpoint_with_nan_weights_is_refused_not_scored(legacy_fixtures, tmp_path, capsys):
    def poison(group):
        layer = group["conv128-s_bn"]
        values = np.array(layer["conv128-s_bn/gamma:0"])
        values[3] = np.nan
        del layer["conv128-s_bn/gamma:0"]
        layer["conv128-s_bn/gamma:0"] = values

    path = _edit(legacy_fixtures, tmp_path, poison)
    with pytest.raises(CheckpointError, match=r"weights of conv128-s_bn hold NaN or infinity"):
        load_model(path)
    sample = Path(__file__).resolve().parent.parent / "samples" / "1255-90413-0001.flac"
    scored = cli_in_process(capsys, "verify", sample, sample, "--checkpoint_file", path, "--threshold", "0.5")
    assert scored.returncode == 2 and "hold NaN or infinity" in scored.stderr and "score = nan" not in scored.stdout
