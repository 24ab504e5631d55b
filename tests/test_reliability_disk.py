"""Drill: the disk fills up during a checkpoint write.

Patched (the writer fails with ``ENOSPC`` half-way through the second checkpoint, as an ``OSError`` and
as safetensors reports it) and, where the machine allows a private mount namespace, on a real 2 MiB
tmpfs filled right after the first checkpoint: the run stops with a ``CheckpointError`` that names the
path, the previous checkpoint is intact, no temp file is left, and a resume after freeing space ends
bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from kd_core.errors import CheckpointError
from safetensors import SafetensorError

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import drill_common as drill  # tests/scripts, put on the path just above


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, list[int]]:
    return drill.reference(tmp_path_factory.mktemp("reference") / "run")


def _enospc_after_half(error: str):
    """A ``save_file`` that writes half of the 2nd state checkpoint, then fails as a full disk does."""
    import kd_core.checkpoint as checkpoint

    real = checkpoint.save_file
    count = {"state": 0}

    def save_file(tensors, filename, metadata=None):
        if metadata and "kd.skeleton" in metadata:
            count["state"] += 1
            if count["state"] == 2:
                real(tensors, filename, metadata=metadata)
                with open(filename, "r+b") as handle:
                    handle.truncate(os.path.getsize(filename) // 2)
                if error == "oserror":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    return mock.patch.object(checkpoint, "save_file", save_file)


@pytest.mark.parametrize("error", ["oserror", "safetensors"])
def test_disk_full_during_a_checkpoint_write_is_a_clear_error_and_keeps_the_previous_one(tmp_path, reference,
                                                                                         error):
    digest, saves = reference
    out = tmp_path / "run"
    with _enospc_after_half(error), pytest.raises(CheckpointError) as caught:
        drill.drill_train.run_toy(str(out))
    message = str(caught.value)
    assert caught.value.argument == "checkpoint"
    assert str(out / "checkpoints" / "last.safetensors") in message and "No space left on device" in message
    assert "previous file is kept" in message
    assert drill.last_checkpoint_step(out) == saves[0]
    assert json.loads((out / "checkpoints" / "last.json").read_text())["global_step"] == saves[0]
    assert drill.temp_files(out) == []  # the half-written temp file was removed
    assert not (out / "checkpoints" / "final.safetensors").exists()
    assert drill.resume(out) == digest  # space freed: the run continues from the surviving checkpoint
    drill.assert_clean_finish(out)


def _private_tmpfs_available(directory: Path) -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs in its own mount namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1"', "sh",
                            str(directory)], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_disk_full_on_a_real_small_tmpfs(tmp_path, reference):
    mount = tmp_path / "fs"
    mount.mkdir()
    if not _private_tmpfs_available(mount):
        pytest.skip("no private mount namespace here (unshare -rm + mount tmpfs); the patched drills ran")
    digest, saves = reference
    script = Path(drill.DRILL).with_name("disk_full_drill.py")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=2m tmpfs "$1" && '
                             'exec "$2" "$3" "$1"', "sh", str(mount), sys.executable, str(script)],
                            capture_output=True, text=True, env=drill.ENV, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["filled"] and report["returncode"] == 2
    assert report["stderr_tail"][0].startswith("error: checkpoint: ")
    assert "last.safetensors" in report["stderr_tail"][0] and "No space left on device" in report["stderr_tail"][0]
    assert report["last_step"] == saves[0] and report["last_json_step"] == saves[0]
    assert report["temp_files"] == []
    assert report["resumed_digest"] == digest
