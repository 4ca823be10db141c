import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from deep_speaker.checkpoints import load_model, save_model
from deep_speaker.errors import CheckpointError
from deep_speaker.models import build_rescnn

ROOT = Path(__file__).resolve().parents[1]
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
        np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected[key], atol=1e-4)


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
    assert model.get_layer("affine").kernel.shape == (2048, 512)


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
    build_rescnn(width=0.125).save_weights(path)
    with pytest.raises(CheckpointError, match="holds no architecture"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    for name in ("absent.h5", "absent.keras"):
        with pytest.raises(CheckpointError, match=f"{name}: no such checkpoint"):
            load_model(tmp_path / name)


def test_native_keras_softmax_model_loads_as_embedding(tmp_path):
    softmax = build_rescnn(width=0.125, num_speakers=5)
    save_model(softmax, tmp_path / "softmax.keras")
    model = load_model(tmp_path / "softmax.keras")
    assert model.output_shape == (None, 512)
    x = np.random.default_rng(0).standard_normal((1, 32, 64, 1)).astype("float32")
    affine = keras.Model(softmax.input, softmax.get_layer("affine").output)(x)
    expected = keras.ops.convert_to_numpy(affine)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected / np.linalg.norm(expected), rtol=1e-5)
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.slow
def test_convert_checkpoint_cli(legacy_fixtures, tmp_path):
    target = tmp_path / "converted.keras"
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "convert-checkpoint", str(legacy_fixtures / "rescnn_softmax_layout.h5.gz"), str(target)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "24,185,728 weights" in result.stdout
    expected = np.load(legacy_fixtures / "rescnn_layout_expected.npz")
    np.testing.assert_allclose(load_model(target).predict(expected["x"], verbose=0), expected["softmax_embedding"], atol=1e-4)


def test_cli_reports_mismatched_checkpoint(legacy_fixtures, tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"nope")
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "convert-checkpoint", str(path), str(tmp_path / "out.keras")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "bad.h5: not an HDF5 checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
