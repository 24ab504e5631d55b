"""Drill: SIGKILL a training run at random points, then ``--resume``: the final weights are bitwise equal
to an uninterrupted run's (CPU, same seed).

The run is kd-core's toy (``packages/kd-core/tests/scripts/train_toy.py``: two phases, gradient
accumulation, clipping, dropout, a checkpoint every 3 steps), driven by ``tests/scripts/drill_train.py``.
Kill points are drawn from ``KD_DRILL_SEED`` (fixed by default; set it to draw others). CI kills after two
random optimizer steps; the slow variant kills after every step, at random wall-clock moments (inside a
forward, a backward, a log line or a checkpoint write), and twice in a row before one resume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import drill_common as drill  # tests/scripts, put on the path just above


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    digest, _ = drill.reference(tmp_path_factory.mktemp("reference") / "run")
    return digest


def _kill_after_step_then_resume(out: Path, step: int, reference: str) -> None:
    drill.assert_killed(drill.run_drill(out, "--kill-after-step", str(step)))
    saved = drill.last_checkpoint_step(out)
    assert saved is None or saved < step  # the resume really starts from an earlier point
    assert drill.resume(out) == reference
    drill.assert_clean_finish(out)


def test_kill_after_random_steps_then_resume_is_bitwise_equal(tmp_path, reference):
    for step in drill.rng("steps").sample(range(1, drill.TOTAL_STEPS), 2):
        _kill_after_step_then_resume(tmp_path / f"step{step}", step, reference)


@pytest.mark.slow
def test_kill_after_every_step_then_resume_is_bitwise_equal(tmp_path, reference):
    for step in range(1, drill.TOTAL_STEPS):
        _kill_after_step_then_resume(tmp_path / f"step{step}", step, reference)


@pytest.mark.slow
def test_kill_at_random_moments_then_resume_is_bitwise_equal(tmp_path, reference):
    chooser = drill.rng("moments")
    killed = 0
    for i in range(12):
        out = tmp_path / f"moment{i}"
        killed += drill.kill_at_random_time(out, chooser)
        assert drill.resume(out) == reference
        drill.assert_clean_finish(out)
    assert killed >= 6  # most draws must land inside the run, or the drill tests nothing


@pytest.mark.slow
def test_two_kills_in_a_row_then_resume_is_bitwise_equal(tmp_path, reference):
    chooser = drill.rng("twice")
    for i in range(4):
        first, second = sorted(chooser.sample(range(1, drill.TOTAL_STEPS), 2))
        out = tmp_path / f"twice{i}"
        drill.assert_killed(drill.run_drill(out, "--kill-after-step", str(first)))
        drill.assert_killed(drill.run_drill(out, "--resume", "--kill-after-step", str(second)))
        assert drill.resume(out) == reference
        drill.assert_clean_finish(out)
