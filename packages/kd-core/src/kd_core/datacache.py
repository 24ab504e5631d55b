"""A verified on-disk cache for derived datasets: files written atomically, trusted only through a manifest.

Any domain can cache what it derives from installed files (a parsed table, rendered images) under
``$KD_DATA_HOME/<name>/``: ``store(directory, key, files)`` writes each file atomically and then a
``manifest.json`` holding the ``key`` (everything the files were derived from: source checksums, a format
number, options) and each file's SHA-256. ``load(directory, key)`` returns the files only when the manifest
exists, its key equals ``key`` and every checksum matches; otherwise it returns ``None`` (the caller rebuilds).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kd_core.errors import ConfigError

MANIFEST = "manifest.json"


def data_home() -> Path:
    """``$KD_DATA_HOME`` or ``~/.cache/kd``: the root of every offline data and teacher cache."""
    return Path(os.environ.get("KD_DATA_HOME") or Path.home() / ".cache" / "kd")


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a data cache is readable like any file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def _normalised(key: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(key), sort_keys=True, default=str))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or name == MANIFEST:
        raise ConfigError("files", f"plain file names (no '/', not hidden, not {MANIFEST!r})", name)


def store(directory: str | os.PathLike, key: Mapping[str, Any], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) into ``directory``, then the manifest that vouches for them.

    The manifest goes last: until it is in place (or while it names another key), nothing is trusted.
    Returns the manifest's path.
    """
    directory = Path(directory)
    if not files:
        raise ConfigError("files", "at least one file to cache", 0)
    for name in files:
        _check_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # invalidate first: a crash mid-write leaves no stale manifest
        (directory / MANIFEST).unlink()
    entries = {}
    for name, data in files.items():
        atomic_write(directory / name, data)
        entries[name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    manifest = {"format": 1, "key": _normalised(key), "files": entries}
    return atomic_write(directory / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def load(directory: str | os.PathLike, key: Mapping[str, Any]) -> dict[str, bytes] | None:
    """The cached files when the manifest's key equals ``key`` and every checksum verifies, else ``None``."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("format") != 1 or manifest.get("key") != _normalised(key):
            return None
        files = {}
        for name, entry in manifest["files"].items():
            data = (directory / name).read_bytes()
            if sha256_bytes(data) != entry["sha256"]:
                return None
            files[name] = data
        return files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def digest(**determinants: Any) -> str:
    """A short SHA-256 digest of ``determinants`` (JSON, keys sorted, with a format number)."""
    blob = json.dumps({"format": 1, **determinants}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_model(build: Callable[[], Any], train: Callable[[Any], Any], prefix: str, reuse: bool = True, /,
                 **determinants: Any) -> tuple[Any, str]:
    """A trained model, loaded from ``$KD_DATA_HOME/teachers/<prefix>-<digest>.safetensors`` when it exists.

    ``build()`` makes the untrained ``nn.Module`` (seeded by the caller), ``train(model)`` trains it; the
    digest covers ``determinants`` and the parameter shapes. Returns the model and a note for reports saying
    where it came from.
    """
    from kd_core.checkpoint import load_weights, save_weights

    model = build()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    key = digest(architecture=shapes, **determinants)
    path = data_home() / "teachers" / f"{prefix}-{key}.safetensors"
    if reuse and path.is_file():
        load_weights(model, path)
        return model, f"reused from {path}"
    model = train(model)
    save_weights(model, path, metadata={"key": key})
    return model, f"trained in this run, cached at {path}"
