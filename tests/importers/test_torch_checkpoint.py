"""PyTorch checkpoints read without torch and without running code: tensors right, anything else refused."""

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from deep_speaker.errors import CheckpointError
from deep_speaker.importers import read_torch_checkpoint


class _Storage:
    """What `torch.save` writes for a tensor's storage: a persistent id naming the dtype class and archive key."""

    def __init__(self, kind: str, key: str, data: bytes, numel: int):
        self.kind, self.key, self.data, self.numel = kind, key, data, numel


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", getattr(sys.modules["torch"], obj.kind), obj.key, "cpu", obj.numel)
        return None


class _Tensor:
    """Pickles as torch does: _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch):
    """Module names for the pickler to reference, as torch's would be (never imported by the reader)."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for kind in ("FloatStorage", "LongStorage", "BFloat16Storage"):
        setattr(torch, kind, type(kind, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only its name is pickled")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def _write(path, obj, storages=(), extra=None) -> str:
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", extra if extra is not None else buffer.getvalue())
        archive.writestr("model/byteorder", "little")
        for storage in storages:
            archive.writestr(f"model/data/{storage.key}", storage.data)
    return path


def test_tensors_views_and_dtypes_come_back_exactly(tmp_path, fake_torch):
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    floats = _Storage("FloatStorage", "0", values.tobytes(), 6)
    longs = _Storage("LongStorage", "1", np.array([7], np.int64).tobytes(), 1)
    bf16 = _Storage("BFloat16Storage", "2", (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes(), 2)
    state = OrderedDict(
        weight=_Tensor(floats, 0, (2, 3), (3, 1)),
        transposed=_Tensor(floats, 0, (3, 2), (1, 3)),
        tail=_Tensor(floats, 4, (2,), (1,)),
        count=_Tensor(longs, 0, (), ()),
        half=_Tensor(bf16, 0, (2,), (1,)),
    )
    loaded = read_torch_checkpoint(_write(tmp_path / "m.ckpt", {"model_state": state, "epoch": 3}, [floats, longs, bf16]))
    model = loaded["model_state"]
    assert loaded["epoch"] == 3 and list(model) == ["weight", "transposed", "tail", "count", "half"]
    np.testing.assert_array_equal(model["weight"], values)
    np.testing.assert_array_equal(model["transposed"], values.T)
    np.testing.assert_array_equal(model["tail"], [4, 5])
    assert model["count"].shape == () and model["count"] == 7 and model["count"].dtype == np.int64
    np.testing.assert_array_equal(model["half"], [1.5, -2.0])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_before_anything_runs(tmp_path, fake_torch):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "evil.pt", {"weight": _Exploit(marker)})
    with pytest.raises(CheckpointError, match=r"evil.pt: refused to load (posix|nt|os)\.system"):
        read_torch_checkpoint(path)
    assert not marker.exists()
    with zipfile.ZipFile(path) as archive:  # the same pickle run by plain pickle would have run the command
        pickle.loads(archive.read("model/data.pkl"))
    assert marker.exists()


def test_other_globals_and_broken_files_are_clear_errors(tmp_path, fake_torch):
    with pytest.raises(CheckpointError, match=r"refused to load builtins\.eval"):
        read_torch_checkpoint(_write(tmp_path / "eval.pt", None, extra=b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R."))
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.pt: not a PyTorch zip checkpoint"):
        read_torch_checkpoint(tmp_path / "text.pt")
    with zipfile.ZipFile(tmp_path / "empty.pt", "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(CheckpointError, match="no single <name>/data.pkl"):
        read_torch_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="unreadable checkpoint pickle"):
        read_torch_checkpoint(_write(tmp_path / "cut.pt", None, extra=b"\x80\x02}q\x00(X"))
    short = _Storage("FloatStorage", "0", b"\x00" * 8, 6)  # claims 6 floats, holds 2
    with pytest.raises(CheckpointError, match="holds 8 bytes, not the 6 x 4"):
        read_torch_checkpoint(_write(tmp_path / "short.pt", {"w": _Tensor(short, 0, (6,), (1,))}, [short]))
    small = _Storage("FloatStorage", "0", b"\x00" * 8, 2)
    with pytest.raises(CheckpointError, match="reaches element 2 of 2"):
        read_torch_checkpoint(_write(tmp_path / "reach.pt", {"w": _Tensor(small, 1, (2,), (1,))}, [small]))
    with pytest.raises(CheckpointError, match="nowhere.pt: no such checkpoint"):
        read_torch_checkpoint(tmp_path / "nowhere.pt")


def test_the_published_checkpoints_read(pytorch_fixtures):
    ge2e = read_torch_checkpoint(pytorch_fixtures / "resemblyzer" / "pretrained.pt")["model_state"]
    assert ge2e["lstm.weight_ih_l0"].shape == (1024, 40) and ge2e["linear.weight"].shape == (256, 256)
    ecapa = read_torch_checkpoint(pytorch_fixtures / "speechbrain" / "ecapa_embedding_model.ckpt")
    assert ecapa["blocks.0.conv.conv.weight"].shape == (256, 80, 5) and ecapa["blocks.0.norm.norm.num_batches_tracked"].dtype == np.int64
    assert all(np.all(np.isfinite(v)) for v in ge2e.values())


def test_a_stride_zero_view_cannot_make_the_reader_allocate_more_than_the_file_holds(tmp_path, fake_torch):
    one = _Storage("FloatStorage", "0", b"\x00" * 4, 1)  # one float, viewed as 2^34 of them (64 GiB) by stride 0
    path = _write(tmp_path / "stride0.pt", {"w": _Tensor(one, 0, (2**17, 2**17), (0, 0))}, [one])
    with pytest.raises(
        CheckpointError, match=r"stride0.pt: tensor over model/data/0 declares shape \(131072, 131072\), more values than the 1"
    ):
        read_torch_checkpoint(path)


def _nested_pickle(levels: int) -> bytes:
    """A few hundred bytes describing 2^levels leaves: each list holds the previous one twice (memo references)."""
    body = b"\x80\x02]q\x00"  # an empty list, memo 0
    for level in range(1, levels + 1):
        body += b"]q" + bytes([level]) + b"(h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"e"
    return body + b"."


def test_shared_references_stay_shared_so_a_tiny_pickle_cannot_explode(tmp_path, fake_torch):
    pickled = _nested_pickle(40)  # 2^40 leaves if each reference were copied
    assert len(pickled) < 600
    path = _write(tmp_path / "bomb.pt", None, extra=pickled)
    loaded = read_torch_checkpoint(path)  # returns at once, sharing as the pickle does
    assert loaded[0] is loaded[1]
    deep = b"\x80\x02" + b"(" * 200 + b"l" * 200 + b"."  # 200 nested lists
    with pytest.raises(CheckpointError, match=r"deep.pt: the checkpoint's objects nest deeper than 64"):
        read_torch_checkpoint(_write(tmp_path / "deep.pt", None, extra=deep))


def test_a_number_or_text_where_a_tensor_belongs_is_named(tmp_path, fake_torch):
    from deep_speaker.importers import import_resemblyzer, import_speechbrain, read_state_dict

    path = _write(tmp_path / "numbers.pt", {"model_state": OrderedDict([("lstm.weight_ih_l0", 3), ("linear.weight", "abc")])})
    with pytest.raises(CheckpointError, match=r"numbers.pt: entry 'lstm.weight_ih_l0' is a int, not a tensor"):
        import_resemblyzer(path)
    speechbrain_like = _write(tmp_path / "sb.pt", OrderedDict([("mfa.conv.conv.weight", "abc")]))
    with pytest.raises(CheckpointError, match=r"sb.pt: entry 'mfa.conv.conv.weight' is a str, not a tensor"):
        import_speechbrain(speechbrain_like)
    with pytest.raises(CheckpointError, match=r"list.pt: holds a list, not a state dict"):
        read_state_dict(_write(tmp_path / "list.pt", [1, 2]))


def test_a_damaged_archive_is_one_clear_error(tmp_path, fake_torch):
    values = _Storage("FloatStorage", "0", np.arange(64, dtype=np.float32).tobytes(), 64)
    path = _write(tmp_path / "crc.pt", {"w": _Tensor(values, 0, (64,), (1,))}, [values])
    data = bytearray(path.read_bytes())
    start = data.index(np.arange(64, dtype=np.float32).tobytes())
    data[start + 100] ^= 0xFF  # one flipped byte of stored tensor data: the member's CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"crc.pt: archive member model/data/0 is damaged \(BadZipFile"):
        read_torch_checkpoint(path)
