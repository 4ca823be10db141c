import os

import numpy as np

from deep_speaker.fileio import atomic_replace, atomic_save_npy, atomic_write_bytes, atomic_write_csv


def test_atomic_writes_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"data")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def fail(temporary):
        with open(temporary, "wb") as stream:
            stream.write(b"half")
        raise OSError("disk full")

    try:
        atomic_replace(target, fail)
    except OSError:
        pass
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_npy_and_csv(tmp_path):
    atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1, 2])
    atomic_write_csv(tmp_path / "a.csv", ("x", "y"), [(1, "a,b")])
    assert (tmp_path / "a.csv").read_text().splitlines() == ["x,y", '1,"a,b"']
