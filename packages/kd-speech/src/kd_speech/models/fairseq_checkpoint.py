"""Read fairseq checkpoints (``torch.save``'d dicts) through a restricted unpickler that runs no foreign code.

A fairseq checkpoint, such as those released with vq-wav2vec (Baevski, Schneider, Auli, ICLR 2020,
arXiv 1910.05453), is a pickled dict with ``args`` (an ``argparse.Namespace``), ``model`` (a state dict),
``optimizer_history`` and ``extra_state``. Unpickling runs whatever callables the file names, so this reader
resolves every global itself against ``ALLOWED_GLOBALS`` (ordered dicts, ``argparse.Namespace``, torch's tensor
and parameter rebuilders and storage types, a few builtins, numpy scalars) and refuses anything else with a
``CheckpointError`` naming ``module.name`` and the file, before any of it is imported or called. Tensors are
rebuilt here from the raw bytes (both the zip format of ``torch.save`` and the older "legacy" stream format);
torch's own unpickler is never used, and nothing is imported by name.

Globals under ``inert_modules`` (for example ``("fairseq.meters",)`` for old training meters kept in
``extra_state``) are read as ``InertObject`` placeholders that keep their arguments and state and run nothing.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from kd_core.errors import CheckpointError

__all__ = ["ALLOWED_GLOBALS", "FairseqCheckpoint", "InertObject", "read_fairseq_checkpoint", "restricted_load"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageType:
    """Stands for ``torch.<Name>Storage`` in a pickle: only its dtype is used."""

    name: str
    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    requires_grad: bool = False, backward_hooks: Any = None, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError(f"a tensor must be rebuilt from a storage, got {type(storage).__name__}")
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks (hooks are code) is refused")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(st < 0 for st in stride) or offset < 0:
        raise pickle.UnpicklingError(f"bad tensor geometry: size {size}, stride {stride}, offset {offset}")
    needed = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if needed > storage.numel():
        raise pickle.UnpicklingError(f"tensor of size {tuple(size)} reaches past its storage of {storage.numel()}")
    return storage.as_strided(tuple(size), tuple(stride), storage.storage_offset() + offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = True, backward_hooks: Any = None) -> torch.Tensor:
    if backward_hooks:
        raise pickle.UnpicklingError("a parameter with backward hooks (hooks are code) is refused")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad) and data.is_floating_point())


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles write ``bytes``; only the latin-1 round trip is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is refused")
    return text.encode("latin1")


def _numpy_scalar(dtype: Any, data: bytes | None = None) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only plain numpy scalars are accepted")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(name: str, align: bool = False, copy: bool = False) -> Any:
    import numpy as np

    dtype = np.dtype(name, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object dtypes are refused")
    return dtype


def _allowed() -> dict[str, Any]:
    table: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "argparse.Namespace": argparse.Namespace,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch.Size": torch.Size,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.slice": slice,
        "builtins.complex": complex,
        "_codecs.encode": _codecs_encode,
        "numpy.core.multiarray.scalar": _numpy_scalar,
        "numpy._core.multiarray.scalar": _numpy_scalar,
        "numpy.dtype": _numpy_dtype,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        table[f"torch.{name}"] = _StorageType(name, dtype)
    return table


#: every ``module.name`` a checkpoint may reference, and what it resolves to (never an import)
ALLOWED_GLOBALS: dict[str, Any] = _allowed()
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class InertObject:
    """A placeholder for an object of a class under ``inert_modules``: it keeps what the pickle gave it."""

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        instance = super().__new__(cls)
        instance.__dict__["args"] = args
        instance.__dict__["kwargs"] = kwargs
        instance.__dict__["state"] = None
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def _inert_class(qualified: str) -> type[InertObject]:
    return type("Inert", (InertObject,), {"qualified_name": qualified})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals from ``ALLOWED_GLOBALS`` only and storages through ``storage``."""

    def __init__(self, file: BinaryIO, source: str, storage: Callable[[tuple], torch.Tensor] | None,
                 inert_modules: tuple[str, ...]) -> None:
        super().__init__(file)
        self.source = source
        self.storage = storage
        self.inert_modules = inert_modules
        self.inert: dict[str, type[InertObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[qualified]
        if any(module == prefix or module.startswith(prefix + ".") for prefix in self.inert_modules):
            return self.inert.setdefault(qualified, _inert_class(qualified))
        raise CheckpointError(
            self.source, "a checkpoint whose pickle names only allowed classes", qualified,
            hint="the reader refuses any class outside kd_speech.models.fairseq_checkpoint.ALLOWED_GLOBALS "
                 "(nothing was imported or run); pass inert_modules=(...) to read a trusted module's objects "
                 "as inert placeholders")

    def persistent_load(self, pid: Any) -> Any:
        if self.storage is None:
            raise pickle.UnpicklingError("a storage reference outside the checkpoint's main record")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[0] if isinstance(pid, tuple) else pid!r}")
        return self.storage(pid)


def _storage_tensor(storage_type: Any, numel: Any, max_bytes: int) -> torch.Tensor:
    """An empty storage of ``numel`` elements, refused when it could not fit in a file of ``max_bytes``."""
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"bad storage size {numel!r}")
    if numel * storage_type.dtype.itemsize > max_bytes:
        raise pickle.UnpicklingError(f"a storage of {numel} elements is larger than the file")
    return torch.empty(numel, dtype=storage_type.dtype)


def _fill(target: torch.Tensor, data: bytes, where: str) -> None:
    expected = target.numel() * target.element_size()
    if len(data) != expected:
        raise pickle.UnpicklingError(f"storage {where} holds {len(data)} bytes, expected {expected}")
    if expected:
        target.view(torch.uint8).copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))


def _load_zip(raw: bytes, source: str, inert_modules: tuple[str, ...]) -> Any:
    archive = zipfile.ZipFile(io.BytesIO(raw))
    names = archive.namelist()
    records = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(records) != 1:
        raise CheckpointError(source, "a torch.save zip archive with one data.pkl", f"{len(records)} data.pkl records")
    prefix = records[0][: -len("data.pkl")]
    packed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
    if packed:  # torch.save stores every record uncompressed; a compressed one could claim any size
        raise CheckpointError(source, "a torch.save archive of uncompressed records", f"compressed {packed[:3]}")
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").decode().strip() != sys.byteorder:
        raise CheckpointError(source, f"a checkpoint saved on a {sys.byteorder}-endian machine",
                              archive.read(f"{prefix}byteorder").decode().strip())
    storages: dict[str, torch.Tensor] = {}

    def storage(pid: tuple) -> torch.Tensor:
        if len(pid) != 5:
            raise pickle.UnpicklingError(f"unexpected storage record of length {len(pid)}")
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive")
            tensor = _storage_tensor(storage_type, numel, archive.getinfo(record).file_size)
            _fill(tensor, archive.read(record), key)
            storages[key] = tensor
        return storages[key]

    return _RestrictedUnpickler(io.BytesIO(archive.read(records[0])), source, storage, inert_modules).load()


def _load_legacy(stream: BinaryIO, file_size: int, source: str, inert_modules: tuple[str, ...]) -> Any:
    def plain() -> Any:
        return _RestrictedUnpickler(stream, source, None, inert_modules).load()

    if plain() != _LEGACY_MAGIC:
        raise CheckpointError(source, "a torch.save file (zip archive or legacy stream)", "an unknown format")
    if plain() != _LEGACY_PROTOCOL:
        raise CheckpointError(source, f"legacy protocol {_LEGACY_PROTOCOL}", "another version")
    info = plain()
    if isinstance(info, dict) and info.get("little_endian", True) != (sys.byteorder == "little"):
        raise CheckpointError(source, f"a checkpoint saved on a {sys.byteorder}-endian machine", "the other order")
    storages: dict[str, torch.Tensor] = {}

    def storage(pid: tuple) -> torch.Tensor:
        if len(pid) != 6:
            raise pickle.UnpicklingError(f"unexpected storage record of length {len(pid)}")
        _, storage_type, key, _location, numel, view = pid
        key = str(key)
        if key not in storages:
            storages[key] = _storage_tensor(storage_type, numel, file_size)
        root = storages[key]
        if view is not None:
            _view_key, offset, length = view
            return root[int(offset):int(offset) + int(length)]
        return root

    result = _RestrictedUnpickler(stream, source, storage, inert_modules).load()
    keys = plain()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise CheckpointError(source, "the storage list of a legacy torch.save file", "a mismatched list")
    for key in map(str, keys):
        tensor = storages[key]
        header = stream.read(8)
        if len(header) != 8 or int.from_bytes(header, "little") != tensor.numel():
            raise CheckpointError(source, f"{tensor.numel()} elements in storage {key}", "a truncated file")
        _fill(tensor, stream.read(tensor.numel() * tensor.element_size()), key)
    return result


def restricted_load(path: str | Path, inert_modules: Iterable[str] = ()) -> Any:
    """The object ``torch.save`` wrote to ``path``, unpickled against ``ALLOWED_GLOBALS`` (tensors on the CPU)."""
    path = Path(path)
    source = str(path)
    inert = tuple(inert_modules)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CheckpointError(source, "a readable checkpoint file", type(error).__name__, hint=str(error)) from None
    try:
        if zipfile.is_zipfile(io.BytesIO(raw)):
            return _load_zip(raw, source, inert)
        return _load_legacy(io.BytesIO(raw), len(raw), source, inert)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RuntimeError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise CheckpointError(source, "a readable torch.save checkpoint", type(error).__name__,
                              hint=str(error)) from None


@dataclass
class FairseqCheckpoint:
    """A fairseq checkpoint's parts: ``args`` (a Namespace, or None when the file has ``cfg`` instead),
    ``model`` (name -> tensor), and everything else in ``extra`` (``optimizer_history``, ``extra_state``...)."""

    path: str
    args: argparse.Namespace | None
    model: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


def read_fairseq_checkpoint(path: str | Path, inert_modules: Iterable[str] = ()) -> FairseqCheckpoint:
    """Read a fairseq checkpoint safely (see the module docstring); a missing ``model`` is a ``CheckpointError``."""
    data = restricted_load(path, inert_modules)
    source = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(source, "a fairseq checkpoint (a dict with a 'model' state dict)",
                              sorted(data) if isinstance(data, dict) else type(data).__name__)
    model = data["model"]
    bad = [key for key, value in model.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(source, "a 'model' state dict of name -> tensor", bad[:5])
    args = data.get("args")
    if args is not None and not isinstance(args, argparse.Namespace):
        raise CheckpointError(source, "'args' as an argparse.Namespace", type(args).__name__)
    extra = {key: value for key, value in data.items() if key not in ("args", "model")}
    return FairseqCheckpoint(path=source, args=args, model={k: v.detach() for k, v in model.items()}, extra=extra)
