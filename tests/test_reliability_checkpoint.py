"""Drill: SIGKILL during a checkpoint write keeps the previous checkpoint, and the run resumes from it.

The K-th checkpoint write of kd-core's toy run dies in one of three ways: half the temp file written
(``torn``); the whole temp file written but not renamed (``complete``); renamed, but ``last.json`` not yet
updated (``renamed``). The previous checkpoint (the new one, for ``renamed``) still loads, and
``--resume`` continues from it to weights bitwise equal to an uninterrupted run's, with the stale temp
file removed. CI draws K at random (``KD_DRILL_SEED``) for two of the ways; the slow variant tries every
K in every way, including the first checkpoint (no previous one: the resume starts over).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import drill_common as drill  # tests/scripts, put on the path just above


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, list[int]]:
    return drill.reference(tmp_path_factory.mktemp("reference") / "run")


def _kill_in_save_then_resume(out: Path, k: int, mode: str, reference: tuple[str, list[int]]) -> None:
    digest, saves = reference
    drill.assert_killed(drill.run_drill(out, "--kill-in-save", str(k), "--kill-mode", mode))
    previous = saves[k - 2] if k >= 2 else None
    json_path = out / "checkpoints" / "last.json"
    recorded = json.loads(json_path.read_text())["global_step"] if json_path.is_file() else None
    if mode == "renamed":  # the new checkpoint is in place; only its JSON summary is stale
        assert drill.last_checkpoint_step(out) == saves[k - 1] and recorded == previous
    else:  # the previous checkpoint is untouched and loads; the torn or unrenamed temp file is left over
        assert drill.last_checkpoint_step(out) == previous and recorded == previous
        assert drill.temp_files(out) == [f".last.safetensors.{_pid_of_tmp(out)}.tmp"]
    assert drill.resume(out) == digest
    drill.assert_clean_finish(out)


def _pid_of_tmp(out: Path) -> str:
    return drill.temp_files(out)[0].split(".")[-2]


def test_kill_during_a_checkpoint_write_keeps_the_previous_one_and_resumes(tmp_path, reference):
    chooser = drill.rng("save")
    for mode in ("torn", "renamed"):
        k = chooser.randrange(2, len(reference[1]) + 1)
        _kill_in_save_then_resume(tmp_path / f"{mode}{k}", k, mode, reference)


@pytest.mark.slow
def test_kill_during_every_checkpoint_write_in_every_way(tmp_path, reference):
    for k in range(1, len(reference[1]) + 1):
        for mode in drill.drill_train.MODES:
            _kill_in_save_then_resume(tmp_path / f"{mode}{k}", k, mode, reference)


