"""Drill: a NaN (or inf) injected into the loss stops the run with a clear message; nothing is overwritten.

kd-core's toy run (through ``tests/scripts/drill_train.py``) gets a non-finite cross-entropy value at a
chosen micro-batch: the last one of an optimizer step (the message names the term) or the first of a
two-micro-batch accumulation group (the message says an earlier micro-batch). The process ends like a
``kd`` command, ``error: ...`` and exit status 2; the checkpoints folder is byte-identical to its state
when the bad value appeared; the last good checkpoint loads; no step after the bad one is logged; and
a resume without the fault ends bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import drill_common as drill  # tests/scripts, put on the path just above

CALLS = 2 * drill.TOTAL_STEPS  # one cross-entropy call per micro-batch, two micro-batches per step


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, list[int]]:
    return drill.reference(tmp_path_factory.mktemp("reference") / "run")


def _nan_drill(out: Path, call: int, value: str, reference: tuple[str, list[int]]) -> None:
    digest, saves = reference
    snapshot = out.with_name(f"{out.name}-snapshot.json")
    result = drill.run_drill(out, "--nan-at-call", str(call), "--nan-value", value, "--snapshot", str(snapshot))
    step = (call + 1) // 2
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: loss/") and "expected a finite loss" in line, line
    assert f"optimizer step {step}" in line and "before the update" in line, line
    if call % 2 == 0:  # the group's last micro-batch: the term is named, with its value
        assert line.startswith(f"error: loss/ce: expected a finite loss, received {value}"), line
    else:
        assert line.startswith("error: loss/total:") and "earlier micro-batch" in line, line
    good = [s for s in saves if s < step]
    assert drill.last_checkpoint_step(out) == (good[-1] if good else None)
    if good:
        assert f"(step {good[-1]}) is kept" in line
    # nothing was written to the checkpoints after the bad value appeared
    assert drill.drill_train.snapshot(out / "checkpoints") == json.loads(snapshot.read_text())
    metrics = out / "metrics.jsonl"  # not there when the very first step failed
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    logged = [json.loads(r)["step"] for r in lines if "loss/total" in r]
    assert logged == list(range(1, step))
    assert drill.resume(out) == digest
    drill.assert_clean_finish(out)


def test_a_nan_or_inf_in_the_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, reference):
    chooser = drill.rng("nan")
    last_micro = 2 * chooser.randrange(4, drill.TOTAL_STEPS + 1)  # after the first checkpoint (step 3)
    first_micro = 2 * chooser.randrange(1, drill.TOTAL_STEPS + 1) - 1
    _nan_drill(tmp_path / "nan", last_micro, "nan", reference)
    _nan_drill(tmp_path / "inf", first_micro, "inf", reference)


@pytest.mark.slow
def test_a_nan_or_inf_at_every_micro_batch(tmp_path, reference):
    for call in range(1, CALLS + 1):
        value = "nan" if call % 3 else "inf"
        _nan_drill(tmp_path / f"call{call}", call, value, reference)
