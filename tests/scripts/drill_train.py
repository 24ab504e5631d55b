"""Fault injection around kd-core's toy distillation run, for the reliability drills in ``tests/``.

The run itself is ``packages/kd-core/tests/scripts/train_toy.py`` (two phases, gradient accumulation,
clipping, dropout, a checkpoint every 3 steps); this script only adds faults to it:

    python drill_train.py OUT [train_toy options] [--kill-in-save K --kill-mode torn|complete|renamed]
                              [--fill-disk-after-save K --filler FILE --slack-kib N]
                              [--nan-at-call C --nan-value nan|inf --snapshot FILE]

``--kill-in-save K`` SIGKILLs the process during its K-th training-state checkpoint write:
``torn`` after half of the temp file is on disk, ``complete`` with the whole temp file written but not
yet renamed, ``renamed`` after ``last.safetensors`` was replaced but before ``last.json`` was updated.
``--fill-disk-after-save K`` fills the file system of ``FILE`` right after the K-th checkpoint, leaving
``N`` KiB free (room for log lines, not for a checkpoint). ``--nan-at-call C`` makes the C-th call of
the cross-entropy term (one per micro-batch) return NaN (or inf), after writing a snapshot (sha256 of
every file) of the run's checkpoints to ``--snapshot``. A ``KDError`` ends the process as the ``kd``
commands do: ``error: <message>`` on stderr and exit status 2.

Imported by the tests, ``run_toy`` runs the toy in the calling process (no interpreter start-up) and
``saved_steps`` records which global steps a run checkpoints at.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import runpy
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "packages" / "kd-core" / "tests" / "scripts" / "train_toy.py"
MODES = ("torn", "complete", "renamed")


def digest_of(stdout: str) -> str:
    """The ``DIGEST <sha256>`` line the toy prints at the end of a run."""
    lines = [line.split()[1] for line in stdout.splitlines() if line.startswith("DIGEST ")]
    if not lines:
        raise AssertionError(f"no DIGEST line in the output:\n{stdout[-2000:]}")
    return lines[-1]


def run_toy(*args: str) -> str:
    """Run the toy in this process with ``args`` (its command line) and return the final weights' digest."""
    buffer = io.StringIO()
    with mock.patch.object(sys, "argv", [str(TOY), *args]), contextlib.redirect_stdout(buffer):
        runpy.run_path(str(TOY), run_name="__main__")
    return digest_of(buffer.getvalue())


@contextlib.contextmanager
def saved_steps() -> Iterator[list[int]]:
    """Record the global step of every training-state checkpoint written while the context is open."""
    import kd_core.engine as engine

    steps: list[int] = []
    real = engine.save_state

    def recording(state, path):
        steps.append(int(state["global_step"]))
        return real(state, path)

    with mock.patch.object(engine, "save_state", recording):
        yield steps


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill_in_save(k: int, mode: str) -> None:
    """Patch kd-core's checkpoint writers so that the ``k``-th training-state write dies as ``mode`` says."""
    import kd_core.checkpoint as checkpoint
    from kd_core.runs import RunDir

    count = {"state": 0, "json": 0}
    real_save_file, real_write_json = checkpoint.save_file, RunDir.write_json

    def save_file(tensors, filename, metadata=None):
        is_state = bool(metadata) and "kd.skeleton" in metadata  # weights-only files are not counted
        if is_state:
            count["state"] += 1
        real_save_file(tensors, filename, metadata=metadata)
        if is_state and count["state"] == k and mode in ("torn", "complete"):
            if mode == "torn":
                with open(filename, "r+b") as handle:
                    handle.truncate(os.path.getsize(filename) // 2)
            _die()

    def write_json(self, name, value):
        if name == "checkpoints/last.json":
            count["json"] += 1
            if mode == "renamed" and count["json"] == k:
                _die()
        return real_write_json(self, name, value)

    checkpoint.save_file = save_file
    RunDir.write_json = write_json


def fill_disk(filler: Path, slack: int) -> int:
    """Write ``filler`` until its file system is full, then give back ``slack`` bytes; return the filler's size."""
    chunk = b"\0" * 4096
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            try:
                if os.write(handle, chunk) < len(chunk):
                    break
            except OSError:  # ENOSPC: full
                break
        size = os.fstat(handle).st_size
        os.ftruncate(handle, max(size - slack, 0))
    finally:
        os.close(handle)
    return size


def install_fill_disk_after_save(k: int, filler: Path, slack: int) -> None:
    """Fill the disk right after the ``k``-th training-state checkpoint (its ``last.json``) is written."""
    from kd_core.runs import RunDir

    count = {"json": 0}
    real_write_json = RunDir.write_json

    def write_json(self, name, value):
        path = real_write_json(self, name, value)
        if name == "checkpoints/last.json":
            count["json"] += 1
            if count["json"] == k:
                fill_disk(filler, slack)
        return path

    RunDir.write_json = write_json


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def install_nan_at_call(c: int, value: float, checkpoints: Path, snapshot_path: Path | None) -> None:
    """Make the ``c``-th cross-entropy call return ``value``; snapshot ``checkpoints`` just before."""
    import kd_core

    real = kd_core.cross_entropy
    count = {"calls": 0}

    def cross_entropy(*args, **kwargs):
        loss = real(*args, **kwargs)
        count["calls"] += 1
        if count["calls"] == c:
            if snapshot_path is not None:
                snapshot_path.write_text(json.dumps(snapshot(checkpoints)))
            loss = loss * value
        return loss

    kd_core.cross_entropy = cross_entropy  # the toy imports it from kd_core when it starts


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the fault options, install them, then run the toy with the remaining arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-in-save", type=int, default=0, help="die during the K-th state checkpoint write")
    parser.add_argument("--kill-mode", choices=MODES, default="torn")
    parser.add_argument("--fill-disk-after-save", type=int, default=0, help="fill the disk after the K-th save")
    parser.add_argument("--filler", type=Path, default=None, help="the file that fills the disk")
    parser.add_argument("--slack-kib", type=int, default=12, help="KiB left free after filling")
    parser.add_argument("--nan-at-call", type=int, default=0, help="the C-th cross-entropy call returns NaN")
    parser.add_argument("--nan-value", choices=["nan", "inf"], default="nan")
    parser.add_argument("--snapshot", type=Path, default=None, help="where to write the checkpoints' snapshot")
    args, rest = parser.parse_known_args(argv)
    if args.nan_at_call:
        install_nan_at_call(args.nan_at_call, float(args.nan_value), Path(rest[0]) / "checkpoints", args.snapshot)
    if args.kill_in_save:
        install_kill_in_save(args.kill_in_save, args.kill_mode)
    if args.fill_disk_after_save:
        if args.filler is None:
            parser.error("--fill-disk-after-save needs --filler")
        install_fill_disk_after_save(args.fill_disk_after_save, args.filler, args.slack_kib * 1024)
    from kd_core.errors import KDError

    sys.argv = [str(TOY), *rest]
    try:
        runpy.run_path(str(TOY), run_name="__main__")
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
