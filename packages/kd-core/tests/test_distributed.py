"""Two CPU processes (torchrun, gloo): every trainable module, not only the student, ends identical on both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

SCRIPT = Path(__file__).parent / "scripts" / "sync_arms.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# per arm, the module that only a wrapping of more than the student keeps in step
NOT_THE_STUDENT = {"dml": "teacher", "tinybert": "projection", "reinforced": "policy"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(out: Path, *args: str) -> list[dict[str, Any]]:
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                             "--master_port", str(_free_port()), str(SCRIPT), str(out), *args],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_trainable_module_ends_identical_on_both_processes(tmp_path):
    """A co-trained teacher (DML / BD-KD), a learned hidden-state projection (TinyBERT) and a teacher-selection
    policy (reinforced multi-teacher) are averaged over the processes like the student; wrapping the student
    alone and leaving the policy's gradients unaveraged (the control) leaves them apart."""
    synced = _two_processes(tmp_path / "synced")
    control = _two_processes(tmp_path / "control", "--student-only")
    for arm, other in NOT_THE_STUDENT.items():
        first, second = synced[0][arm], synced[1][arm]
        # the processes trained on different samples: each epoch (32 ids per process) is split between them
        assert len(first["seen"]) == len(second["seen"]) == 64
        assert set(first["seen"][:32]).isdisjoint(second["seen"][:32])
        for name in ("student", other):
            assert not _same(first["before"][name], first["after"][name]), f"{arm}: {name} did not train"
            assert _same(first["after"][name], second["after"][name]), f"{arm}: {name} differs across processes"
        apart = control[0][arm], control[1][arm]
        assert apart[0]["seen"] == first["seen"]  # the same run, but for the wrapping
        assert _same(apart[0]["after"]["student"], apart[1]["after"]["student"])
        assert not _same(apart[0]["after"][other], apart[1]["after"][other]), f"{arm}: the control cannot fail"
