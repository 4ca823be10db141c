"""PyTorch checkpoints (`torch.save` zip files) read into NumPy without torch and without executing code.

A torch checkpoint is a zip archive: `<name>/data.pkl`, a pickle of the saved object in which each tensor is
a call of `torch._utils._rebuild_tensor_v2` on a storage given by "persistent id", whose bytes are the
archive member `<name>/data/<key>`. Unpickling normally imports and calls whatever the pickle names, so a
crafted file runs arbitrary code. This reader resolves only the names a state dict needs (tensors, their
storages, `OrderedDict`) to functions of its own, and refuses every other name with an error naming the
file and the object; containers and numbers are built by pickle itself. Sizes, strides and offsets are
checked against the archive before any array is made, and the object graph is walked with each shared object
built once and a bound on the objects built (a few hundred bytes of pickle can otherwise describe billions).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
import zlib
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
MAX_OBJECTS = 1_000_000  # containers and tensors in one checkpoint (a state dict holds hundreds)
MAX_DEPTH = 64  # nesting of containers (a state dict nests two or three deep)
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError)  # a damaged or odd archive


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
        raise CheckpointError(
            f"{source}: {member} holds {info.file_size} bytes, not the {storage.numel} x {dtype.itemsize} its tensor needs"
        )
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in (offset, *size, *stride)) or len(size) != len(stride):
        raise CheckpointError(f"{source}: tensor over {member} has a malformed shape {size} / stride {stride} / offset {offset}")
    if int(np.prod(size, dtype=object)) > storage.numel:  # a stride-0 view repeating a storage (or a lie) would allocate it all
        raise CheckpointError(
            f"{source}: tensor over {member} declares shape {size}, more values than the {storage.numel} its storage holds"
        )
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= storage.numel:
        raise CheckpointError(f"{source}: tensor over {member} reaches element {last} of {storage.numel}")
    flat = np.frombuffer(_read_member(archive, member, source), dtype=dtype.newbyteorder("<"))
    values = (
        np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * dtype.itemsize for s in stride])
        if all(size)
        else np.zeros(size, dtype)
    )
    values = np.array(values, dtype=dtype.newbyteorder("="))
    if storage.dtype == "bfloat16":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def _read_member(archive: zipfile.ZipFile, member: str, source: Path) -> bytes:
    try:
        return archive.read(member)
    except ARCHIVE_ERRORS as error:  # a bad CRC, a truncated or unsupported compressed member
        raise CheckpointError(f"{source}: archive member {member} is damaged ({type(error).__name__}: {error})") from None


def _materialise(value, read_tensor, source: Path):
    """The unpickled object with tensors read: each shared object built once (so shared references stay shared
    and cannot multiply), at most `MAX_OBJECTS` objects and `MAX_DEPTH` levels."""
    built: dict[int, object] = {}

    def visit(item, depth: int):
        if not isinstance(item, (dict, list, tuple)):
            return item
        if id(item) in built:
            return built[id(item)]
        if depth > MAX_DEPTH or len(built) >= MAX_OBJECTS:
            raise CheckpointError(
                f"{source}: the checkpoint's objects nest deeper than {MAX_DEPTH} or number over {MAX_OBJECTS:,}; not a state dict"
            )
        if isinstance(item, tuple) and len(item) == 5 and item[0] == "tensor" and isinstance(item[1], _Storage):
            result = read_tensor(*item[1:])
        elif isinstance(item, dict):
            result = type(item)((key, visit(entry, depth + 1)) for key, entry in item.items())
        else:
            result = type(item)(visit(entry, depth + 1) for entry in item)
        built[id(item)] = result
        return result

    return visit(value, 0)


def read_torch_checkpoint(path) -> dict:
    """The object saved in a torch checkpoint, tensors as NumPy arrays; refuses code, bombs and broken files."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such checkpoint")
    if not zipfile.is_zipfile(source):
        raise CheckpointError(f"{source}: not a PyTorch zip checkpoint (files saved by torch < 1.6 must be re-saved with torch.save)")
    try:
        with zipfile.ZipFile(source) as archive:
            return _read_archive(archive, source)
    except ARCHIVE_ERRORS as error:
        raise CheckpointError(f"{source}: damaged zip archive ({type(error).__name__}: {error})") from None


def _read_archive(archive: zipfile.ZipFile, source: Path):
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
    if byteorder in archive.namelist() and _read_member(archive, byteorder, source).strip() != b"little":
        raise CheckpointError(f"{source}: big-endian tensors are not supported")
    pickled = _read_member(archive, pickles[0], source)
    try:
        loaded = _SafeUnpickler(io.BytesIO(pickled), source).load()
    except CheckpointError:
        raise
    except Exception as error:  # a truncated or malformed pickle: any unpickling error, one message
        raise CheckpointError(f"{source}: unreadable checkpoint pickle ({type(error).__name__}: {error})") from None
    return _materialise(loaded, lambda *tensor: _array(archive, prefix, source, *tensor), source)


def read_state_dict(path, key: str | None = None) -> dict[str, np.ndarray]:
    """The state dict saved in a torch checkpoint (the dict under `key` when the file holds one there, as a training
    checkpoint does): names -> arrays. Anything else where a tensor belongs is refused naming the entry."""
    source = Path(path)
    loaded = read_torch_checkpoint(source)
    if key is not None and isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
        loaded = loaded[key]
    return require_tensors(loaded, source)


def require_tensors(state, source) -> dict[str, np.ndarray]:
    """`state` if it is a state dict (names -> arrays), else a `CheckpointError` naming the first entry that is not."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: holds a {type(state).__name__}, not a state dict of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor; not a state dict")
    return state
