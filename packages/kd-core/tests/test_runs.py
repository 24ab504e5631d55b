"""Run directories: metrics records are written in groups, never lost before a checkpoint, and errors name them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


# -- the lock: one process trains in a run directory at a time -------------------------------------

_HOLD = """
import sys, time
from kd_core.runs import RunDir
run = RunDir.create(sys.argv[1], {"a": 1}, resume=len(sys.argv) > 2)
print("locked", flush=True)
time.sleep(120)
"""


def _create_in_child(out: Path, resume: bool) -> subprocess.CompletedProcess:
    """``RunDir.create`` in another process (a resume carries the run's own config.yaml)."""
    config = f"RunDir({str(out)!r}).config()" if resume else "{'a': 1}"
    code = f"from kd_core.runs import RunDir; RunDir.create({str(out)!r}, {config}, resume={resume})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused_while_the_first_holds_the_run_and_accepted_after_it_dies(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (out / runs_module.LOCK).read_text().strip() == str(holder.pid)
        refused = _create_in_child(out, resume=True)
        assert refused.returncode != 0
        assert "RunDirError" in refused.stderr and f"process {holder.pid} holds" in refused.stderr
        with pytest.raises(RunDirError) as caught:  # this process too
            RunDir.create(out, {"a": 1}, resume=True)
        assert str(holder.pid) in str(caught.value) and caught.value.argument == "--out"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _create_in_child(out, resume=True).returncode == 0  # the OS released the dead holder's lock
    run = RunDir.create(out, {"a": 1}, resume=True)
    assert run.locked and (out / runs_module.LOCK).read_text().strip() == str(os.getpid())
    run.close()
    assert not run.locked


def test_the_lock_is_held_for_a_fit_and_given_back_after_it(tmp_path):
    seen = []

    class Probe(Callback):
        def on_step_end(self, distiller, logs) -> None:
            if not seen:
                seen.append(_create_in_child(distiller.run.path, resume=True).stderr)

    objective = Objective(Term("ce", cross_entropy, target="label"))
    distiller = Distiller(tiny_mlp(seed=2), [Phase("train", objective, epochs=1)], backend=Backend("cpu"),
                          batch_size=16, callbacks=[Probe()])
    distiller.fit(BlobDataset(32), out=tmp_path / "run")
    assert f"process {os.getpid()} holds" in seen[0]
    assert not distiller.run.locked
    assert _create_in_child(tmp_path / "run", resume=False).returncode != 0  # a run is there: --out refused
    assert _create_in_child(tmp_path / "run", resume=True).returncode == 0  # the lock was given back


def test_a_study_and_its_arm_runs_lock_their_own_folders_without_deadlock(tmp_path, monkeypatch):
    from kd_core.study import Arm, Study, TrainSpec, supervised_phases
    from kd_core.task import Splits, Task

    held: list[tuple[str, bool]] = []
    original = runs_module._lock

    def spy(path: Path) -> None:
        original(path)
        held.append((Path(path).name, str((tmp_path / "study").resolve()) in runs_module._held))

    monkeypatch.setattr(runs_module, "_lock", spy)
    task = Task(name="blobs", splits=lambda: Splits(BlobDataset(48), BlobDataset(24, seed=1), BlobDataset(24, seed=2),
                                                    BlobDataset(48, seed=3)),
                teacher=lambda: tiny_mlp(seed=1), student=lambda seed: tiny_mlp(seed=seed), key={"blobs": 1})
    arms = {"scratch": Arm(lambda: supervised_phases(TrainSpec(1, 1e-2)), role="scratch")}
    Study(task, arms, [0], title="t", latency_iterations=0).run(tmp_path / "study")
    assert held == [("study", True), ("scratch-seed0", True)]  # the arm locks inside the study's lock
    assert runs_module._held == {}  # every lock given back


# -- --out where no run directory can be made: one error naming --out, nothing left behind ----------

@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_an_out_where_no_run_directory_can_be_made_is_refused_before_anything_is_written(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    out = {"file": blocker, "under-file": blocker / "run", "proc": Path("/proc/kd-test/run")}[where]
    before = sorted(tmp_path.rglob("*"))
    for write in (True,) if where == "proc" else (False, True):  # (/proc says no only when a folder is made)
        with pytest.raises(RunDirError) as caught:
            RunDir.create(out, {"a": 1}, write=write)
        assert caught.value.argument == "--out" and str(out) in str(caught.value)
    assert sorted(tmp_path.rglob("*")) == before and blocker.read_text() == "keep"
    assert not Path("/proc/kd-test").exists()


def test_a_failed_start_leaves_no_run_directory(tmp_path, monkeypatch):
    def full(path: Path, text: str) -> None:
        raise RunDirError(path.name, "free space", str(path))

    monkeypatch.setattr(runs_module, "_write_atomic", full)
    with pytest.raises(RunDirError):
        RunDir.create(tmp_path / "new" / "run", {"a": 1})
    assert not (tmp_path / "new").exists() and runs_module._held == {}
