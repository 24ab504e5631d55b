"""What the reliability drills (``tests/test_reliability_*.py``) share: the toy run's reference, kills, checks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drill_train  # beside this file

DRILL = Path(drill_train.__file__)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
SEED = int(os.environ.get("KD_DRILL_SEED", "20261127"))  # set it to draw other kill points
TOTAL_STEPS = 24  # train_toy.py: 96 samples, batch 8, 2 micro-batches per step; 3 + 1 epochs


def rng(name: str) -> random.Random:
    """A random source for one drill, fixed by ``KD_DRILL_SEED`` and the drill's name."""
    return random.Random(f"{SEED}-{name}")


def reference(out: Path) -> tuple[str, list[int]]:
    """Run the toy uninterrupted in this process: its final digest and the steps it checkpoints at."""
    with drill_train.saved_steps() as steps:
        digest = drill_train.run_toy(str(out))
    return digest, steps


def run_drill(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``drill_train.py OUT args`` in a subprocess; return it (killed or not)."""
    return subprocess.run([sys.executable, str(DRILL), str(out), *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def assert_killed(result: subprocess.CompletedProcess) -> None:
    """The subprocess died of SIGKILL (not of an error)."""
    assert result.returncode == -signal.SIGKILL, f"rc {result.returncode}: {result.stderr[-3000:]}"


def kill_at_random_time(out: Path, chooser: random.Random, window_s: float = 1.5) -> bool:
    """Start the toy, wait until it logs its first step, SIGKILL it after a random delay; True if it was killed."""
    process = subprocess.Popen([sys.executable, str(DRILL), str(out)], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(chooser.uniform(0.0, window_s))
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"rc {process.returncode}: {stderr.decode()[-3000:]}")
    return process.returncode == -signal.SIGKILL


def resume(out: Path) -> str:
    """Continue the run in ``out`` (or start it, if it died before writing its config); return the digest."""
    if not (out / "config.yaml").is_file():
        return drill_train.run_toy(str(out))
    return drill_train.run_toy(str(out), "--resume")


def last_checkpoint_step(out: Path) -> int | None:
    """The global step ``checkpoints/last.safetensors`` holds (it must load), or None when there is none."""
    from kd_core.checkpoint import load_state

    path = out / "checkpoints" / "last.safetensors"
    return int(load_state(path)["global_step"]) if path.is_file() else None


def temp_files(out: Path) -> list[str]:
    """Temp files left in the run folder (by a process killed mid-write)."""
    return sorted(p.name for p in out.rglob(".*.tmp"))


def assert_clean_finish(out: Path) -> None:
    """After a resume: no temp files remain and no step is logged twice."""
    assert temp_files(out) == []
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss/total" in line]
    assert steps == list(range(1, TOTAL_STEPS + 1)), steps
