"""Reading legacy (pre-zip) PyTorch `.pth` state dicts with numpy alone, without torch.

A pickle can run arbitrary code, so the unpickler admits only the handful of globals a tensor
state dict needs and refuses everything else.

Legacy layout: magic number, protocol version, sys info, the pickled state dict (whose tensors
point at storages through persistent ids), the list of storage keys, then each storage's raw bytes
as an int64 element count followed by the data, in the order of that list.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

from lib.errors import TransferLabError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
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


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor still waiting for its storage bytes."""

    def __init__(self, key: str, offset: int, shape: tuple, stride: tuple):
        self.key, self.offset, self.shape, self.stride = key, offset, tuple(shape), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *a):
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    }

    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"Refusing to load global `{module}.{name}` from a weights file.")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        if not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"Unexpected persistent id {pid!r}.")
        _, storage_type, key, _location, numel, _view = pid[:6]
        self.storages[key] = (storage_type.dtype, numel)
        return key


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a legacy-format PyTorch state dict into numpy arrays.

    Args:
        path: the `.pth` file.

    Returns:
        An ordered dict from parameter name to a numpy array with the tensor's shape.

    Raises:
        TransferLabError: the file is missing, not a legacy torch file, or asks for code to run.
    """
    path = Path(path)
    if not path.is_file():
        raise TransferLabError(f"Weights file not found: {path}")
    storages: dict[str, tuple[np.dtype, int]] = {}
    try:
        with open(path, "rb") as f:
            magic = pickle.load(f)  # plain ints and dicts only; checked next
            if magic != LEGACY_MAGIC:
                raise TransferLabError(f"{path} is not a legacy PyTorch weights file.")
            _protocol = pickle.load(f)
            _sys_info = pickle.load(f)
            state = _RestrictedUnpickler(f, storages).load()
            keys = _RestrictedUnpickler(f, storages).load()
            flat: dict[str, np.ndarray] = {}
            for key in keys:
                dtype, numel = storages[key]
                (count,) = struct.unpack("<q", f.read(8))
                if count != numel:
                    raise TransferLabError(f"{path}: storage {key} holds {count} items, expected {numel}.")
                flat[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    except (pickle.UnpicklingError, EOFError, struct.error) as e:
        raise TransferLabError(f"{path} could not be read as weights: {e}") from e
    out: dict[str, np.ndarray] = collections.OrderedDict()
    for name, ref in state.items():
        storage = flat[ref.key]
        itemsize = storage.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            storage[ref.offset :],
            shape=ref.shape,
            strides=tuple(s * itemsize for s in ref.stride),
        )
        out[name] = np.array(arr)  # own the memory: the file buffer goes away
    return out
