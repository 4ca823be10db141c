"""PyTorch checkpoints (`torch.save` zip files) read into NumPy without torch and without executing code.

A torch checkpoint is a zip archive: `<name>/data.pkl`, a pickle of the saved object in which each tensor is
a call of `torch._utils._rebuild_tensor_v2` on a storage given by "persistent id", whose bytes are the
archive member `<name>/data/<key>`. Unpickling normally imports and calls whatever the pickle names, so a
crafted file runs arbitrary code. This reader resolves only the names a state dict needs (tensors, their
storages, `OrderedDict`) to functions of its own, and refuses every other name with an error naming the
file and the object; containers and numbers are built by pickle itself. Sizes are checked against the
archive before any array is made.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..checkpoints import max_checkpoint_bytes
from ..errors import CheckpointError

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A storage named by the pickle: its element type and archive key, read when a tensor needs it."""

    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = dtype, key, numel


def _rebuild_tensor(storage: _Storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, stream, source: Path):
        super().__init__(stream)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise CheckpointError(
            f"{self.source}: refused to load {module}.{name}: a checkpoint may hold only tensors, plain containers "
            "and numbers (anything else could run code when unpickled)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise CheckpointError(f"{self.source}: unexpected storage reference {pid!r}")
        _, kind, key, _location, numel = pid
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self.source}: malformed storage reference {pid!r}")
        return _Storage(STORAGE_DTYPES[kind], key, numel)


def _array(archive: zipfile.ZipFile, prefix: str, source: Path, storage: _Storage, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """The tensor's values: the storage member's bytes as `dtype`, viewed at `offset` with `size` and `stride`."""
    dtype = np.dtype(np.uint16 if storage.dtype == "bfloat16" else storage.dtype)
    member = f"{prefix}/data/{storage.key}"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise CheckpointError(f"{source}: tensor data {member} is missing from the archive") from None
    if info.file_size != storage.numel * dtype.itemsize:
        raise CheckpointError(f"{source}: {member} holds {info.file_size} bytes, not the {storage.numel} x {dtype.itemsize} its tensor needs")
    if any(not isinstance(v, int) or v < 0 for v in (offset, *size, *stride)):
        raise CheckpointError(f"{source}: tensor over {member} has a malformed shape {size} / stride {stride} / offset {offset}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= storage.numel:
        raise CheckpointError(f"{source}: tensor over {member} reaches element {last} of {storage.numel}")
    flat = np.frombuffer(archive.read(member), dtype=dtype.newbyteorder("<"))
    values = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * dtype.itemsize for s in stride]) if all(size) else np.zeros(size, dtype)
    values = np.array(values, dtype=dtype.newbyteorder("="))
    if storage.dtype == "bfloat16":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def read_torch_checkpoint(path) -> dict:
    """The object saved in a torch checkpoint, tensors as NumPy arrays; refuses code, bombs and broken files."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such checkpoint")
    if not zipfile.is_zipfile(source):
        raise CheckpointError(f"{source}: not a PyTorch zip checkpoint (files saved by torch < 1.6 must be re-saved with torch.save)")
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > max_checkpoint_bytes():
            raise CheckpointError(
                f"{source}: unpacks to {total / 2**20:.0f} MB, over the checkpoint limit (raise DEEP_SPEAKER_MAX_CHECKPOINT_MB if the file is trusted)"
            )
        pickles = [info.filename for info in infos if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{source}: not a PyTorch checkpoint (no single <name>/data.pkl in the archive)")
        prefix = pickles[0].rsplit("/", 1)[0]
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(f"{source}: big-endian tensors are not supported")
        try:
            with archive.open(pickles[0]) as stream:
                loaded = _SafeUnpickler(stream, source).load()
        except CheckpointError:
            raise
        except Exception as error:  # a truncated or malformed pickle: any unpickling error, one message
            raise CheckpointError(f"{source}: unreadable checkpoint pickle ({type(error).__name__}: {error})") from error

        def materialise(value):
            if isinstance(value, tuple) and len(value) == 5 and value[0] == "tensor" and isinstance(value[1], _Storage):
                return _array(archive, prefix, source, *value[1:])
            if isinstance(value, dict):
                return type(value)((k, materialise(v)) for k, v in value.items())
            if isinstance(value, (list, tuple)):
                return type(value)(materialise(v) for v in value)
            return value

        return materialise(loaded)
