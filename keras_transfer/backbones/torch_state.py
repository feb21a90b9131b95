"""Read a PyTorch state dict saved in the legacy (non-zip) `torch.save` format, without torch.

The file is a pickle stream, and unpickling runs whatever callables the file names: loading an
untrusted `.pth` with plain `pickle` can execute arbitrary code. This reader allows only the four
globals a tensor state dict needs (an OrderedDict, the tensor rebuild function, and storage
types), each mapped to a harmless stand-in of our own; any other global is refused before it is
ever called.

Legacy layout: pickle(magic number), pickle(protocol version), pickle(system info),
pickle(state dict, storages as persistent ids), pickle(list of storage keys), then each storage's
raw data as an 8-byte little-endian element count followed by the little-endian elements.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CorruptCheckpointError(pickle.UnpicklingError, ValueError):
    """The file is truncated, malformed, or describes a tensor outside its own storage.

    A ValueError too, so every CLI reports it as one line (exit 2).
    """


class UnsafeCheckpointError(CorruptCheckpointError):
    """The file names a Python global that a plain tensor state dict never needs."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    key: str
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self, name: str) -> np.ndarray:
        if self.storage.data is None:
            raise ValueError(f"tensor {name}: storage {self.storage.key} has no data in the file")
        _check_extent(name, self, self.storage.data.size)
        if not self.shape:
            return self.storage.data[self.offset].copy()
        if 0 in self.shape:
            return np.zeros(self.shape, dtype=self.storage.data.dtype)
        itemsize = self.storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset:], shape=self.shape, strides=[s * itemsize for s in self.stride]
        )
        return np.array(view)


def _check_extent(name: str, tensor: _TensorRef, numel: int) -> None:
    """Refuse a tensor whose elements do not all lie inside its storage, before any view is built.

    `as_strided` trusts shape, stride and offset blindly: one element past the storage reads (or
    segfaults on) memory that is not the file's, and a negative offset indexes from the end. The
    extent is computed in Python integers, so no value can overflow. A tensor may not hold more
    elements than its storage either (a stride-0 broadcast of a huge shape would allocate without
    bound; weights are never saved that way).
    """
    shape, stride, offset = tensor.shape, tensor.stride, tensor.offset
    where = f"tensor {name} (shape {list(shape)}, stride {list(stride)}, offset {offset}, storage of {numel})"
    if len(shape) != len(stride) or len(shape) > 32:
        raise ValueError(f"{where}: shape and stride must have the same length, at most 32")
    if offset < 0 or any(n < 0 for n in shape) or any(s < 0 for s in stride):
        raise ValueError(f"{where}: negative shape, stride or offset")
    count = 1
    for n in shape:
        count *= n
    if count == 0:
        if offset > numel:
            raise ValueError(f"{where}: offset past the end of its storage")
        return
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if last >= numel:
        raise ValueError(f"{where}: reaches element {last}, outside its storage")
    if count > numel:
        raise ValueError(f"{where}: {count} elements, more than its storage holds")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    # The pickle supplies these values: check their types here, their extent once data is read.
    if not isinstance(storage, _Storage):
        raise TypeError(f"a tensor's storage is {type(storage).__name__}, not a storage")
    if not (_is_int(storage_offset) and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and all(_is_int(v) for v in (*size, *stride))):
        raise TypeError(f"a tensor has a malformed offset, shape or stride ({storage_offset!r}, {size!r}, {stride!r})")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, storages: dict[str, _Storage] | None, allow_globals: bool):
        super().__init__(stream)
        self._storages = storages
        self._allow_globals = allow_globals

    def find_class(self, module: str, name: str):
        if self._allow_globals and (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(
            f"refusing to load global {module}.{name}: a tensor state dict only needs "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch storage types, so "
            "this file is either not a plain state dict or crafted to run code"
        )

    def persistent_load(self, pid):
        if self._storages is None or not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a legacy torch file")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported in legacy torch files")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid[:5]!r}")
        storage = self._storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        return storage


def _load(stream, storages=None, allow_globals=False):
    return _RestrictedUnpickler(stream, storages, allow_globals).load()


def read_legacy_state_dict(path: str | Path) -> "collections.OrderedDict[str, np.ndarray]":
    """Return the tensors of a legacy-format PyTorch state dict file as numpy arrays.

    Raises UnsafeCheckpointError for a file that names any global beyond those of a tensor state
    dict (nothing in it is executed), and CorruptCheckpointError (a pickle.UnpicklingError and a
    ValueError) with the file name for a truncated or malformed file, or one whose tensor shape,
    stride or offset reaches outside its storage.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            return _read(stream)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, OverflowError) as error:
        raise CorruptCheckpointError(
            f"{path} is not a readable legacy PyTorch state dict (truncated or corrupted?): {error}"
        ) from None


def _read(stream: io.BufferedReader) -> "collections.OrderedDict[str, np.ndarray]":
    if _load(stream) != _MAGIC:
        raise ValueError("no legacy torch magic number (a zip-format file needs torch.load)")
    if _load(stream) != _PROTOCOL:
        raise ValueError("unsupported legacy torch protocol version")
    _load(stream)  # system info: endianness and type sizes, little-endian on every platform we read
    size = os.fstat(stream.fileno()).st_size
    storages: dict[str, _Storage] = {}
    state = _load(stream, storages, allow_globals=True)
    keys = _load(stream)
    if not isinstance(keys, list):
        raise ValueError("malformed storage key list")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise ValueError(f"storage {key!r} is listed but never referenced")
        (count,) = struct.unpack("<q", _read_exactly(stream, 8))
        itemsize = np.dtype(storage.dtype).itemsize
        if count < 0 or count * itemsize > size - stream.tell():
            # Checked before reading: a crafted count would otherwise allocate without bound.
            raise EOFError(f"storage {key!r} claims {count} elements, more than the file holds")
        raw = _read_exactly(stream, count * itemsize)
        storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    if not isinstance(state, dict):
        raise ValueError("the file does not hold a state dict")
    return collections.OrderedDict(
        (name, value.materialise(name) if isinstance(value, _TensorRef) else value) for name, value in state.items()
    )


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"file ends after {len(data)} of {size} expected bytes")
    return data
