"""Run directories: metrics records are written in groups, never lost before a checkpoint, and errors name them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kd_core import Backend, Callback, Distiller, FrozenTeacher, Objective, Phase, RunDirError, Term
from kd_core import runs as runs_module
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.runs import RunDir
from kd_core.testing import BlobDataset, tiny_mlp


class FakeClock:
    """Stands in for ``time.monotonic`` inside ``kd_core.runs``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(runs_module.time, "monotonic", fake)
    return fake


def _lines_on_disk(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_records_reach_the_file_once_flush_seconds_have_passed(tmp_path, clock):
    run = RunDir(tmp_path / "r")
    run.log({"step": 1, "loss": 0.5})
    assert (tmp_path / "r" / "metrics.jsonl").is_file()  # opened at once: a watcher sees the run started
    clock.now += RunDir.FLUSH_SECONDS / 2
    run.log({"step": 2, "loss": 0.4})
    assert _lines_on_disk(tmp_path / "r") == []  # held in memory: no encoding, no write per step
    clock.now += RunDir.FLUSH_SECONDS / 2
    run.log({"step": 3, "loss": 0.3})
    assert [r["step"] for r in _lines_on_disk(tmp_path / "r")] == [1, 2, 3]
    run.log({"step": 4, "loss": 0.2})
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4]  # reading through the run includes held records
    run.log({"step": 5, "loss": 0.1})
    run.close()
    assert [r["step"] for r in _lines_on_disk(tmp_path / "r")] == [1, 2, 3, 4, 5]
    assert run._metrics_file is None


def test_a_record_changed_after_logging_is_written_as_it_was_logged(tmp_path, clock):
    run = RunDir(tmp_path / "r")
    record = {"step": 1, "loss": 0.5}
    run.log(record)
    record["loss"] = 99.0  # e.g. a callback editing the dict the engine logged
    run.close()
    assert _lines_on_disk(tmp_path / "r") == [{"step": 1, "loss": 0.5}]


def test_a_record_json_cannot_hold_is_named_and_the_others_are_written(tmp_path, clock):
    run = RunDir(tmp_path / "r")
    run.log({"step": 1, "loss": 0.5})
    run.log({"step": 2, "loss": object()})
    run.log({"step": 3, "loss": 0.3})
    with pytest.raises(RunDirError) as caught:
        run.flush()
    assert caught.value.argument == "metrics record (step 2)" and "object" in str(caught.value)
    assert [r["step"] for r in _lines_on_disk(tmp_path / "r")] == [1, 3]
    run.close()


def test_a_failed_write_is_a_run_dir_error_naming_the_file(tmp_path, clock, monkeypatch):
    run = RunDir(tmp_path / "r")
    run.log({"step": 1, "loss": 0.5})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run._metrics_file, "write", full)
    with pytest.raises(RunDirError, match="No space left on device") as caught:
        run.flush()
    assert caught.value.argument == "metrics.jsonl"


class ReadsDiskAtStep(Callback):
    """Reads metrics.jsonl from disk (as a second process would) at one step."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, None

    def on_step_end(self, distiller, logs) -> None:
        if logs["step"] == self.step:
            path = distiller.run.path / "metrics.jsonl"
            self.seen = [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("checkpoint_every", [0, 2])
def test_the_engine_writes_every_record_before_each_checkpoint(tmp_path, monkeypatch, checkpoint_every):
    monkeypatch.setattr(RunDir, "FLUSH_SECONDS", 1e9)  # only a checkpoint can explain lines on disk
    probe = ReadsDiskAtStep(3)
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5, temperature=2.0),
                          Term("ce", cross_entropy, target="label", weight=0.5))
    distiller = Distiller(tiny_mlp(seed=2), [Phase("train", objective, epochs=1)],
                          teacher=FrozenTeacher(tiny_mlp(hidden=32, seed=1)), backend=Backend("cpu"),
                          batch_size=16, checkpoint_every=checkpoint_every, callbacks=[probe])
    result = distiller.fit(BlobDataset(64), out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())["global_step"]
    assert probe.seen == ([1, 2] if checkpoint_every == 2 else [])
    assert saved == 4 and [r["step"] for r in result.run.metrics() if "loss/total" in r] == [1, 2, 3, 4]
