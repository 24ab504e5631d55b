"""Run directories: ``runs/<name>/`` with config.yaml, env.json, metrics.jsonl, checkpoints/, plots/, report.md.

A run directory is never silently overwritten: creating one that already holds a run is an error
unless the run is resumed, and a resume must carry the same configuration. While a process trains in a
run directory it holds an exclusive lock on ``<run>/.lock`` (which names its PID): a second process is
refused, and the lock goes when the run closes or its process dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from kd_core.errors import CheckpointError, RunDirError

_METRICS_JSON = json.JSONEncoder(default=float)  # built once: json.dumps(..., default=) builds one per call
_VERSIONED = ("torch", "torchvision", "torchaudio", "transformers", "diffusers", "accelerate", "numpy",
              "onnxruntime", "kd-core", "kd-vision", "kd-nlu", "kd-speech", "kd-generative", "kd-edge")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(seed: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions, platform, git commit and seed: what env.json records."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "git_commit": _git_commit(), "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    info.update(extra or {})
    return info


LOCK = ".lock"
"""The lock file of a run directory (it holds the PID of the process training in it)."""

_held: dict[str, list[Any]] = {}  # resolved run path -> [open lock file, RunDirs of this process holding it]


def _holds_run(path: Path) -> bool:
    """Whether ``path`` holds anything but a lock file (a run, or files of the user's)."""
    return path.is_dir() and any(p.name != LOCK for p in path.iterdir())


def _check_out(path: Path) -> None:
    """Refuse, before anything is written, an ``--out`` where no run directory can be made: a file stands
    there or above it, or its nearest existing folder cannot be written."""
    if path.exists() and not path.is_dir():
        raise RunDirError("--out", "a directory for the run", str(path), hint="a file stands there")
    above = path
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise RunDirError("--out", "a path whose folders can be made", str(path), hint=f"{above} is a file")
    if not os.access(above, os.W_OK | os.X_OK):
        raise RunDirError("--out", "a writable place for the run directory", str(path),
                          hint=f"{above} cannot be written")
    if above != path:  # permission bits do not tell (root under /proc, a read-only mount): make a folder and remove it
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".kd-probe-", dir=above))
        except OSError as err:
            raise RunDirError("--out", "a path where a run directory can be made", str(path),
                              hint=f"making a folder in {above} failed ({err.strerror or err})") from None


def _make_dirs(path: Path) -> Path | None:
    """``mkdir -p path``; return the topmost folder made (None if it existed). A failure (``/proc``, a
    read-only disk) removes what was made and raises a ``RunDirError`` naming ``--out``."""
    missing = []
    above = path
    while not above.exists():
        missing.append(above)
        above = above.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise RunDirError("--out", "a path where a run directory can be made", str(path),
                          hint=f"making it failed ({err.strerror or err})") from None
    return missing[-1] if missing else None


def _lock(path: Path) -> None:
    """Take the exclusive lock of the run directory ``path`` for this process (again, if it holds it already)."""
    key = str(path.resolve())
    if key in _held:
        _held[key][1] += 1
        return
    lock = path / LOCK
    try:
        handle = open(lock, "a+")  # noqa: SIM115 - held open for the whole run; closing it releases the lock
    except OSError as err:
        raise RunDirError("--out", "a writable run directory", str(path),
                          hint=f"opening its lock file failed ({err.strerror or err})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunDirError("--out", "a run directory that can be locked", str(path),
                              hint=f"locking {lock} failed ({err.strerror or err})") from None
        raise RunDirError("--out", "a run directory no other process is training in", str(path),
                          hint=f"process {holder} holds {lock}; wait for it to end, or stop it") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[key] = [handle, 1]


def _unlock(path: Path) -> None:
    """Give back one hold of this process on the lock of ``path``; the last one closes the file (unlocking)."""
    key = str(path.resolve())
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[key]
        entry[0].close()


def _write_atomic(path: Path, text: str) -> None:
    """Temp file, then rename; a failed write (e.g. a full disk) raises a ``KDError`` and keeps the old file.

    Files under ``checkpoints/`` raise ``CheckpointError``, other run files ``RunDirError``; both name the path.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        error = CheckpointError if path.parent.name == "checkpoints" else RunDirError
        raise error(path.name, f"a writable run directory with free space for {path.name}", str(path),
                    hint=f"Writing failed ({err.strerror or err}); the previous file is kept unchanged") from None


class RunDir:
    """A run's folder. ``RunDir.create`` refuses to reuse a folder that already holds a run."""

    CONFIG = "config.yaml"

    FLUSH_SECONDS = 1.0
    """Logged records wait in memory at most this long (since the last write) before reaching metrics.jsonl."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._metrics_file: Any = None
        self._pending: list[dict[str, Any]] = []
        self._written_at = 0.0
        self._locked = False

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict[str, Any], resume: bool = False,
               env: dict[str, Any] | None = None, write: bool = True,
               options: tuple[str, str] = ("--out", "--resume")) -> RunDir:
        """Open ``path`` for a new run (or for resuming one with the same ``config``).

        Checks come first; nothing is written before they pass. ``write=False`` (non-main processes)
        checks without writing. ``options`` is how the caller names the run directory and the way to resume
        in its errors: the CLI's flags by default; ``Distiller.fit`` passes ``("out", "fit(..., resume=True)")``,
        and its errors then name ``out`` and ``resume`` instead of ``--out`` and ``--resume``.
        """
        try:
            return cls._open(path, config, resume, env, write, options)
        except RunDirError as err:
            names = {"--out": options[0], "--resume": "resume" if not options[0].startswith("--") else "--resume"}
            if err.argument not in names or names[err.argument] == err.argument:
                raise
            raise RunDirError(names[err.argument], err.expected, err.received, hint=err.hint) from None

    @classmethod
    def _open(cls, path: str | os.PathLike, config: dict[str, Any], resume: bool, env: dict[str, Any] | None,
              write: bool, options: tuple[str, str]) -> RunDir:
        run = cls(path)
        existing = run.path / cls.CONFIG
        _check_out(run.path)
        if resume:
            if not existing.is_file():
                raise RunDirError("--resume", f"a run directory holding {cls.CONFIG}", str(run.path))
            run._check_same(config)
            if write:
                run.acquire()
                run._check_same(config)  # (read again under the lock: the holder may have just finished)
            return run
        if _holds_run(run.path):
            raise RunDirError(options[0], "a new or empty run directory", str(run.path),
                              hint=f"to continue that run use {options[1]}, or choose another {options[0]}")
        if write:
            made = _make_dirs(run.path)
            try:
                run.acquire()
            except BaseException:  # folders made here and still empty go (another process may be in them)
                folder = run.path
                while made is not None and folder != made.parent:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                    folder = folder.parent
                raise
            if _holds_run(run.path):  # another process started a run here since the check above
                run.close()
                raise RunDirError("--out", "a new or empty run directory", str(run.path),
                                  hint="another process has just started a run there")
            try:
                for sub in ("checkpoints", "plots"):
                    (run.path / sub).mkdir(parents=True, exist_ok=True)
                _write_atomic(existing, yaml.safe_dump(_normalise(config), sort_keys=True))
                _write_atomic(run.path / "env.json", json.dumps(env or environment(), indent=1, default=str))
            except BaseException:  # nothing of a failed start is left behind
                run.close()
                if made is not None:
                    shutil.rmtree(made, ignore_errors=True)
                else:
                    for name in (cls.CONFIG, "env.json"):
                        (run.path / name).unlink(missing_ok=True)
                    for sub in ("checkpoints", "plots"):
                        with contextlib.suppress(OSError):
                            (run.path / sub).rmdir()
                raise
        return run

    def _check_same(self, config: dict[str, Any]) -> None:
        check_same_config(yaml.safe_load((self.path / self.CONFIG).read_text()), config, self.path)

    def acquire(self) -> None:
        """Take the run directory's lock (``RunDirError`` naming the holder's PID if another process has it)
        until ``close``; ``create`` does it. Holding it again from the same process is allowed."""
        _lock(self.path)
        self._locked = True

    @property
    def locked(self) -> bool:
        """Whether this ``RunDir`` holds its folder's lock (until ``close``)."""
        return self._locked

    @property
    def checkpoints(self) -> Path:
        """Where checkpoints go."""
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        """Where plots go."""
        return self.path / "plots"

    @property
    def report(self) -> Path:
        """The run's report."""
        return self.path / "report.md"

    def config(self) -> dict[str, Any]:
        """The resolved configuration the run was started with."""
        return yaml.safe_load((self.path / self.CONFIG).read_text())

    def log(self, record: dict[str, Any]) -> None:
        """Add one record to metrics.jsonl (one JSON line).

        Records are written in groups: when ``FLUSH_SECONDS`` have passed since the last write, on ``flush()``
        and on ``close()``. A training step then costs no encoding and no system call; the engine flushes
        before every checkpoint, so a killed run loses only records newer than its last checkpoint, the
        steps a resume redoes. A copy of ``record`` is kept: changing the dict later does not change the line.
        """
        if self._metrics_file is None:
            self._open_metrics()
        self._pending.append(dict(record))
        if time.monotonic() - self._written_at >= self.FLUSH_SECONDS:
            self.flush()

    def _open_metrics(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._metrics_file = open(self.path / "metrics.jsonl", "a")  # noqa: SIM115 - kept open across calls, closed by close()
        except OSError as err:
            raise self._metrics_error("Opening", err) from None
        self._written_at = time.monotonic()

    def flush(self) -> None:
        """Write the records ``log`` holds to metrics.jsonl now."""
        pending, self._pending = self._pending, []
        self._written_at = time.monotonic()
        if not pending:  # (records are only held while the file is open: log opens it, close flushes first)
            return
        lines, bad = [], []
        for record in pending:
            try:
                lines.append(_METRICS_JSON.encode(record))
            except (TypeError, ValueError) as err:
                bad.append((record, err))
        if lines:
            self._write_lines(lines)
        if bad:
            record, err = bad[0]
            raise RunDirError(f"metrics record (step {record.get('step', '?')})",
                              "numbers, strings, lists and dicts (values JSON can hold)",
                              {k: type(v).__name__ for k, v in record.items()},
                              hint=f"Encoding failed ({err}); {len(bad)} record(s) not written, the others are")

    def _write_lines(self, lines: list[str]) -> None:
        try:
            self._metrics_file.write("\n".join(lines) + "\n")
            self._metrics_file.flush()
        except OSError as err:
            raise self._metrics_error("Writing", err) from None

    def _metrics_error(self, action: str, err: OSError) -> RunDirError:
        """The error for metrics.jsonl failing to open or to take lines (e.g. a full disk), naming the file."""
        return RunDirError("metrics.jsonl", "a writable run directory with free space",
                           str(self.path / "metrics.jsonl"), hint=f"{action} failed ({err.strerror or err})")

    def close(self) -> None:
        """Write what ``log`` holds, close metrics.jsonl and give back the run directory's lock."""
        try:
            self._close_metrics()
        finally:
            if self._locked:
                self._locked = False
                _unlock(self.path)

    def _close_metrics(self) -> None:
        if self._metrics_file is not None:
            try:
                self.flush()
            finally:
                self._metrics_file.close()
                self._metrics_file = None

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temp files (``.<name>.<pid>.tmp``) a process killed mid-write left behind; return them.

        Call only while no process writes to the run (e.g. when a resume starts).
        """
        stale = [p for folder in (self.path, self.checkpoints) if folder.is_dir()
                 for p in folder.glob(".*.tmp") if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl (a torn last line, from a crash, is skipped), records held by ``log``
        included."""
        if self._pending:
            self.flush()
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, keep: int) -> None:
        """Keep only records with ``step`` ≤ ``keep`` (used on resume to drop steps redone)."""
        self._close_metrics()
        records = [r for r in self.metrics() if r.get("step", 0) <= keep]
        _write_atomic(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def write_json(self, name: str, value: Any) -> Path:
        """Write ``value`` as ``<run>/<name>`` atomically."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, json.dumps(value, indent=1, default=float))
        return path

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file in the run atomically."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, text)
        return path


def check_same_config(previous: Any, config: Any, where: str | os.PathLike) -> None:
    """Raise the ``--resume`` error listing the differences when ``config`` is not the ``previous`` one."""
    if _normalise(previous) != _normalise(config):
        diff = _differences(previous, config)
        raise RunDirError("--resume", "the same configuration as the run being resumed",
                          diff[:5], hint=f"differences (key: before -> now) in {where}")


def _normalise(value: Any) -> Any:
    """Round-trip through YAML so tuples, paths and numbers compare as they are stored."""
    return yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(value, default=str)), sort_keys=True))


def _differences(before: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(now), key=str):
            out += _differences(before.get(key), now.get(key), f"{prefix}{key}.")
        return out
    before_n, now_n = _normalise(before), _normalise(now)
    return [] if before_n == now_n else [f"{prefix.rstrip('.')}: {before_n!r} -> {now_n!r}"]
