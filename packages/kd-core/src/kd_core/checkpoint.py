"""Checkpoints as one safetensors file each, written atomically (temp file, fsync, rename).

A failed write (a full disk, an I/O error) raises ``CheckpointError`` and leaves the previous file intact.

Any nested state (model and optimizer state dicts, RNG states, counters) is split into tensors,
stored as safetensors entries, and a JSON skeleton kept in the file's metadata. Loading never
unpickles anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kd_core.errors import CheckpointError

_SKELETON = "kd.skeleton"
_FORMAT = "kd.format"
_ALIASES = "kd.aliases"


def _deduplicate(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safetensors can write, and the aliases to restore on load.

    Tied weights (the same view of one storage under two names, e.g. a language model's embedding and output
    matrices) are written once and recorded as ``alias -> name``; any other tensor sharing a storage already
    written (a different view of it) is written as a copy.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    views: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        if tensor.numel() == 0:
            unique[name] = tensor
            continue
        pointer = tensor.untyped_storage().data_ptr()
        view = (pointer, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if view in views:
            aliases[name] = views[view]
            continue
        if pointer in storages:
            tensor = tensor.clone()
        else:
            storages.add(pointer)
        views[view] = name
        unique[name] = tensor
    return unique, aliases


def _save_tensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None) -> None:
    unique, aliases = _deduplicate(tensors)
    metadata = dict(metadata or {})
    if aliases:
        metadata[_ALIASES] = json.dumps(aliases)
    save_file(unique, path, metadata=metadata or None)


def _load_tensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors with their aliases restored, metadata)`` of a file written by ``_save_tensors``."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(path)
    for alias, name in json.loads(metadata.get(_ALIASES, "{}")).items():
        tensors[alias] = tensors[name]
    return tensors, metadata


def _flatten(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__t__": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__np__": key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__d__": {k: _flatten(v, tensors, f"{path}.{k}") for k, v in value.items()}}
        return {"__kv__": [[_flatten(k, tensors, path), _flatten(v, tensors, f"{path}.{k}")]
                           for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not np.isfinite(value):
            return {"__f__": repr(value)}
        return value
    raise CheckpointError(path or "state", "tensors, arrays, dicts, lists, tuples, numbers or strings",
                          type(value).__name__)


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if isinstance(node, dict):
        if "__t__" in node:
            return tensors[node["__t__"]]
        if "__np__" in node:
            return tensors[node["__np__"]].numpy()
        if "__d__" in node:
            return {k: _unflatten(v, tensors) for k, v in node["__d__"].items()}
        if "__kv__" in node:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in node["__kv__"]}
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
        if "__f__" in node:
            return float(node["__f__"])
    return node


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], argument: str = "checkpoint") -> Path:
    """Call ``write(temp_path)``, fsync, then rename onto ``path``: a crash mid-write keeps the previous file.

    An ``OSError`` (e.g. ``ENOSPC``, disk full) or a safetensors I/O error while writing becomes a
    ``CheckpointError`` naming ``path``; the temp file is removed and the previous file is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except (OSError, SafetensorError) as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        kept = "the previous file is kept unchanged" if path.is_file() else "no earlier file existed"
        raise CheckpointError(argument, f"a writable location with free space for {path.name}", str(path),
                              hint=f"Writing failed ({reason}); {kept}. Free some space, then --resume") from None
    return path


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a crash or a full disk mid-write leaves the previous file intact."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors, "")
    metadata = {_SKELETON: json.dumps(skeleton), _FORMAT: "1"}
    return write_atomic(path, lambda tmp: _save_tensors(tensors, tmp, metadata))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_state``; raise ``CheckpointError`` if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint", "an existing checkpoint file", str(path))
    try:
        tensors, metadata = _load_tensors(str(path))
        skeleton = json.loads(metadata[_SKELETON])
    except (SafetensorError, OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise CheckpointError("checkpoint", "a complete kd checkpoint (safetensors with a kd skeleton)",
                              str(path), hint=f"the file is corrupt or not a kd checkpoint: {err}") from None
    return _unflatten(skeleton, tensors)


def rng_state() -> dict[str, Any]:
    """Every random state a run depends on: Python, NumPy, torch CPU and CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write only a model's weights (safetensors, atomically), e.g. for a cached teacher."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return write_atomic(path, lambda tmp: _save_tensors(state, tmp, metadata), argument="weights")


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``source`` onto ``path`` atomically (e.g. the best checkpoint), with ``write_atomic``'s guarantees."""
    data = Path(source).read_bytes()
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load weights written by ``save_weights``; raise ``CheckpointError`` if they do not fit."""
    path = Path(path)
    try:
        state, _ = _load_tensors(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError("weights", "a readable safetensors file", str(path), hint=str(err)) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError("weights", f"weights for {type(model).__name__}", str(path),
                              hint=str(err).splitlines()[0]) from None
    return model
