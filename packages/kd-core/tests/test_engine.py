"""Distiller behaviour: exact resume after SIGKILL, atomic checkpoints, two processes, precision, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kd_core import (
    Backend,
    Callback,
    CheckpointError,
    ConfigError,
    Distiller,
    FrozenTeacher,
    KDError,
    Objective,
    Phase,
    RunDirError,
    TapError,
    Term,
    TrainableTeacher,
    cross_entropy,
    kl_divergence,
)
from kd_core.checkpoint import load_state, save_state
from kd_core.engine import NonFiniteLossError, sgd
from kd_core.runs import RunDir
from kd_core.testing import BlobDataset, tiny_mlp
from torch import nn

SCRIPT = Path(__file__).parent / "scripts" / "train_toy.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _run_script(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=ENV,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def _digest(result: subprocess.CompletedProcess) -> str:
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("DIGEST"))


def kd_objective(temperature: float = 2.0) -> Objective:
    return Objective(Term("kd", kl_divergence, teacher="logits", weight=0.7, temperature=temperature),
                     Term("ce", cross_entropy, target="label", weight=0.3))


def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path):
    reference = _digest(_run_script(str(tmp_path / "full")))
    # step 5 is mid-epoch, after the step-3 checkpoint; step 9 is in the second epoch, after an epoch-end one
    for kill_at in (5, 9):
        out = tmp_path / f"killed{kill_at}"
        killed = _run_script(str(out), "--kill-after-step", str(kill_at), check=False)
        assert killed.returncode == -signal.SIGKILL
        last = json.loads((out / "checkpoints" / "last.json").read_text())
        assert last["global_step"] < kill_at  # the resume really starts from an earlier checkpoint
        resumed = _run_script(str(out), "--resume")
        assert _digest(resumed) == reference
        steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
                 if "loss/total" in line]
        assert steps == sorted(set(steps)), "steps redone after the resume must not be logged twice"


KILL_DURING_WRITE = """
import os, signal, sys
import safetensors.torch as st
import kd_core.checkpoint as ck
path = sys.argv[1]
ck.save_state({"value": 1, "w": __import__("torch").ones(3)}, path)
real = st.save_file
def dying(tensors, filename, metadata=None):
    real(tensors, filename, metadata=metadata)
    with open(filename, "r+b") as handle:   # a torn write: half the file, then the process dies
        handle.truncate(os.path.getsize(filename) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
ck.save_file = dying
ck.save_state({"value": 2, "w": __import__("torch").zeros(3)}, path)
"""


def test_kill_during_checkpoint_write_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "last.safetensors"
    result = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(path)], env=ENV, capture_output=True,
                            timeout=120)
    assert result.returncode == -signal.SIGKILL
    state = load_state(path)
    assert state["value"] == 1 and torch.equal(state["w"], torch.ones(3))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.safetensors"]
    assert leftovers and all(name.endswith(".tmp") for name in leftovers)  # only the torn temp file


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                             "--master_port", str(_free_port()), str(SCRIPT), str(tmp_path / "ddp"),
                             "--epochs", "2", "--digest", str(tmp_path / "digest")],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [(tmp_path / f"digest.{rank}").read_text() for rank in (0, 1)]
    assert ranks[0] == ranks[1]
    single = _digest(_run_script(str(tmp_path / "single"), "--epochs", "2"))
    assert ranks[0] != single  # two processes really split the data (each step saw both shards)
    env = json.loads((tmp_path / "ddp" / "env.json").read_text())
    assert env["backend"]["world_size"] == 2


def test_a_nan_on_one_process_stops_every_process_at_the_same_step(tmp_path):
    """Rank 1's loss turns NaN at its 5th micro-batch (inside optimizer step 3): both processes stop there,
    before the update, with a NonFiniteLossError (rank 0's names the other process), instead of rank 0
    stepping on NaN gradients and then waiting in an all-reduce for a process that has gone."""
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                             "--master_port", str(_free_port()), str(SCRIPT), str(tmp_path / "ddp"),
                             "--epochs", "2", "--nan-rank", "1", "--nan-at-call", "5"],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode != 0
    assert "NaN or inf on 1 other process(es) of 2 (this one, rank 0, was finite)" in result.stderr
    assert "optimizer step 3" in result.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
             if "loss/total" in line]
    assert steps == [1, 2]  # rank 0 logged the two good steps and stopped before the third update


def _distiller(student, teacher=None, **kwargs) -> Distiller:
    phases = kwargs.pop("phases", None) or [Phase("train", kd_objective() if teacher is not None else
                                                  Objective(Term("ce", cross_entropy, target="label")),
                                                  epochs=kwargs.pop("epochs", 1))]
    return Distiller(student, phases=phases, teacher=FrozenTeacher(teacher) if teacher is not None else None,
                     backend=kwargs.pop("backend", Backend("cpu")), batch_size=kwargs.pop("batch_size", 16),
                     **kwargs)


@pytest.mark.filterwarnings("ignore::kd_core.backends.PrecisionWarning")  # (its own test)
def test_fp16_on_cpu_trains_and_checkpoints_its_loss_scale(tmp_path):
    student = tiny_mlp(seed=2)
    before = [p.detach().clone() for p in student.parameters()]
    result = _distiller(student, tiny_mlp(hidden=32, seed=1), backend=Backend("cpu", "fp16")).fit(
        BlobDataset(64), out=tmp_path / "fp16")
    losses = [r["loss/total"] for r in result.run.metrics() if "loss/total" in r]
    assert len(losses) == 4 and all(map(math.isfinite, losses))  # 64 samples in batches of 16
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    scaler = load_state(tmp_path / "fp16" / "checkpoints" / "last.safetensors")["scaler"]
    assert scaler is not None and scaler["scale"] > 0  # a resume continues with the same loss scale
    fp32 = load_state(_distiller(tiny_mlp(seed=2), tiny_mlp(hidden=32, seed=1)).fit(
        BlobDataset(64), out=tmp_path / "fp32").run.checkpoints / "last.safetensors")
    assert fp32["scaler"] is None


@pytest.mark.filterwarnings("ignore::kd_core.backends.PrecisionWarning")  # (its own test)
def test_bf16_autocast_runs_on_cpu(tmp_path):
    seen: dict[str, torch.dtype] = {}
    student = tiny_mlp(seed=2)
    student[0].register_forward_hook(lambda m, a, out: seen.update(dtype=out.dtype))
    result = _distiller(student, tiny_mlp(hidden=32, seed=1), backend=Backend("cpu", "bf16")).fit(
        BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "bf16")
    assert seen["dtype"] == torch.bfloat16
    losses = [r["loss/total"] for r in result.run.metrics() if "loss/total" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert 0.0 <= result.history[-1]["val/accuracy"] <= 1.0


def test_gradient_accumulation_equals_a_bigger_batch(tmp_path):
    def train(batch_size: int, accum: int, out: str) -> nn.Module:
        student = tiny_mlp(seed=2)
        objective = Objective(Term("ce", cross_entropy, target="label"))
        Distiller(student, phases=[Phase("p", objective, epochs=1, optimizer=sgd(0.1, momentum=0.0))],
                  backend=Backend("cpu"), batch_size=batch_size, grad_accum_steps=accum).fit(
            BlobDataset(64), out=tmp_path / out)
        return student

    # the epoch's permutation does not depend on the batch size, so two micro-batches of 8 hold the
    # same samples as one batch of 16, and the mean of their mean losses is the batch's mean loss
    big, accumulated = train(16, 1, "big"), train(8, 2, "acc")
    unaccumulated = train(8, 1, "small")
    for a, b, c in zip(big.parameters(), accumulated.parameters(), unaccumulated.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(a, c, atol=1e-4)


def test_clipping_bounds_the_update(tmp_path):
    student = tiny_mlp(seed=2)
    before = [p.detach().clone() for p in student.parameters()]
    objective = Objective(Term("ce", cross_entropy, target="label", weight=1000.0))
    Distiller(student, phases=[Phase("p", objective, epochs=1, optimizer=sgd(1.0, momentum=0.0))],
              backend=Backend("cpu"), batch_size=64, clip_grad_norm=0.01).fit(BlobDataset(64), out=tmp_path / "c")
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(student.parameters(), before)])
    assert step.norm() <= 0.01 * 1.0 + 1e-6  # one SGD step of lr 1 with a gradient clipped to norm 0.01


def test_trainable_teacher_is_updated(tmp_path):
    teacher = tiny_mlp(hidden=32, seed=1)
    before = [p.detach().clone() for p in teacher.parameters()]
    signal_ = TrainableTeacher(teacher, Objective(Term("ce", cross_entropy, target="label"),
                                                  Term("mutual", kl_divergence, teacher="logits", weight=0.5)))
    Distiller(tiny_mlp(seed=2), phases=[Phase("online", kd_objective(), epochs=1)], teacher=signal_,
              backend=Backend("cpu"), batch_size=16).fit(BlobDataset(64), out=tmp_path / "online")
    assert any(not torch.equal(p, b) for p, b in zip(teacher.parameters(), before))


def test_phases_restore_best_and_write_checkpoints(tmp_path):
    phases = [Phase("one", kd_objective(), epochs=2, restore_best=True),
              Phase("two", Objective(Term("ce", cross_entropy, target="label")), epochs=1)]
    result = _distiller(tiny_mlp(seed=2), tiny_mlp(hidden=32, seed=1), phases=phases).fit(
        BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "phases")
    names = {p.name for p in (tmp_path / "phases" / "checkpoints").iterdir()}
    assert {"last.safetensors", "best.safetensors", "best-one.safetensors", "final.safetensors"} <= names
    assert [h["phase"] for h in result.history] == [0, 0, 1]
    assert set(result.best) == {"one", "two"}


# -- bad input: a KDError naming the argument, before training, nothing overwritten -----------------

def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_unknown_tap_fails_at_construction():
    objective = Objective(Term("hint", kl_divergence, student="0.wieght", teacher="logits"))
    with pytest.raises(TapError) as caught:
        Distiller(tiny_mlp(), phases=[Phase("p", objective)], teacher=FrozenTeacher(tiny_mlp(seed=1)))
    assert "tap" in str(caught.value) and "0.wieght" in str(caught.value)


def test_class_mismatch_fails_before_training(tmp_path):
    distiller = _distiller(tiny_mlp(classes=3), tiny_mlp(classes=5, seed=1))
    with pytest.raises(ConfigError) as caught:
        distiller.fit(BlobDataset(32), out=tmp_path / "mismatch")
    assert caught.value.argument == "teacher" and "3" in str(caught.value) and "5" in str(caught.value)
    assert not (tmp_path / "mismatch").exists()  # nothing was written


def test_temperature_must_be_positive():
    with pytest.raises(ConfigError) as caught:
        kd_objective(temperature=0.0)
    assert "temperature" in caught.value.argument


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    _distiller(tiny_mlp(seed=2)).fit(BlobDataset(32), out=out)
    before = _snapshot(out)
    with pytest.raises(RunDirError) as caught:
        _distiller(tiny_mlp(seed=2)).fit(BlobDataset(32), out=out)
    # the Python API's words, not the CLI's flags
    assert caught.value.argument == "out"
    assert "fit(..., resume=True)" in str(caught.value) and "another out" in str(caught.value)
    assert "--" not in str(caught.value).replace(str(out), "")
    with pytest.raises(RunDirError) as caught:  # the CLI (RunDir.create's default) keeps its flags
        RunDir.create(out, {})
    assert caught.value.argument == "--out" and "use --resume, or choose another --out" in str(caught.value)
    with pytest.raises(RunDirError) as caught:  # resume with another configuration
        _distiller(tiny_mlp(seed=2), epochs=3).fit(BlobDataset(32), out=out, resume=True)
    assert caught.value.argument == "resume" and "epochs" in str(caught.value)
    with pytest.raises(RunDirError) as caught:  # resume where no run is
        _distiller(tiny_mlp(seed=2)).fit(BlobDataset(32), out=tmp_path / "none", resume=True)
    assert caught.value.argument == "resume" and "--" not in str(caught.value).replace(str(tmp_path), "")
    with pytest.raises(RunDirError) as caught:  # an out where a file stands
        _distiller(tiny_mlp(seed=2)).fit(BlobDataset(32), out=out / "config.yaml")
    assert caught.value.argument == "out"
    assert _snapshot(out) == before


def test_corrupt_checkpoint_is_reported(tmp_path):
    out = tmp_path / "run"
    _distiller(tiny_mlp(seed=2), epochs=2).fit(BlobDataset(32), out=out)
    last = out / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    before = _snapshot(out)
    with pytest.raises(CheckpointError) as caught:
        _distiller(tiny_mlp(seed=2), epochs=2).fit(BlobDataset(32), out=out, resume=True)
    assert caught.value.argument == "checkpoint" and "last.safetensors" in str(caught.value)
    assert _snapshot(out) == before
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "missing.safetensors")


def test_checkpoint_round_trip_keeps_types(tmp_path):
    state = {"a": torch.arange(3), "b": (1, 2.5, None, "x"), "c": {3: torch.ones(2)}, "d": [float("inf")]}
    loaded = load_state(save_state(state, tmp_path / "s.safetensors"))
    assert torch.equal(loaded["a"], state["a"]) and loaded["b"] == state["b"]
    assert torch.equal(loaded["c"][3], torch.ones(2)) and loaded["d"] == [float("inf")]


def test_a_built_cache_serves_the_fit_without_running_or_moving_the_teacher(tmp_path):
    from kd_core import CachedTeacher

    teacher = tiny_mlp(hidden=32, seed=1)
    calls = []
    teacher.register_forward_hook(lambda m, a, out: calls.append(1))
    cache = CachedTeacher(FrozenTeacher(teacher), tmp_path / "cache")

    def fit(signal, out):
        student = tiny_mlp(seed=2)
        Distiller(student, [Phase("kd", kd_objective(), epochs=2)], teacher=signal, backend=Backend("cpu"),
                  batch_size=16).fit(BlobDataset(64), out=tmp_path / out)
        return student

    cached_first = fit(cache, "build")  # builds the cache: the teacher runs
    assert calls
    calls.clear()
    cached = fit(cache, "serve")
    assert calls == []  # neither the shape probe nor the steps ran the teacher
    online = fit(FrozenTeacher(teacher), "online")
    for a, b, c in zip(cached.state_dict().values(), cached_first.state_dict().values(),
                       online.state_dict().values()):
        assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-6)


def test_metrics_file_is_complete_and_closed_after_fit(tmp_path):
    result = _distiller(tiny_mlp(seed=2), tiny_mlp(hidden=32, seed=1), epochs=2).fit(BlobDataset(64),
                                                                               out=tmp_path / "m")
    steps = [r["step"] for r in result.run.metrics() if "loss/total" in r]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 4 * 2
    assert result.run._metrics_file is None


def test_a_cotrained_teacher_follows_the_phase_schedule_and_is_validated(tmp_path):
    from kd_core.engine import cosine_lr

    teacher = tiny_mlp(hidden=32, seed=1)
    signal_ = TrainableTeacher(teacher, Objective(Term("ce", cross_entropy, target="label")),
                               optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    result = Distiller(tiny_mlp(seed=2), phases=[Phase("online", kd_objective(), epochs=2, optimizer=sgd(lr=0.1),
                                                       scheduler=cosine_lr)],
                       teacher=signal_, backend=Backend("cpu"), batch_size=16).fit(
        BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "online")
    assert signal_.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine to zero, like the student
    assert all("val_teacher/accuracy" in h for h in result.history)


def test_resume_with_a_cotrained_teacher_and_schedule_equals_an_uninterrupted_run(tmp_path):
    from kd_core import Callback
    from kd_core.engine import cosine_lr

    class Crash(Callback):
        def on_step_end(self, distiller, logs):
            if distiller.global_step == 6:  # inside epoch 2, after epoch 1's checkpoint
                raise RuntimeError("simulated crash")

    def run(out, callbacks=(), resume=False):
        from kd_core import HiddenMSE

        torch.manual_seed(0)
        teacher, student, projection = tiny_mlp(hidden=32, seed=1), tiny_mlp(seed=2), HiddenMSE(3, 3)
        # the teacher's objective has a trainable part of its own: it is checkpointed with the teacher
        signal_ = TrainableTeacher(teacher, Objective(Term("ce", cross_entropy, target="label"),
                                                      Term("proj", projection, teacher="logits", weight=0.1)),
                                   optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9))
        Distiller(student, phases=[Phase("online", kd_objective(), epochs=3, optimizer=sgd(lr=0.1),
                                         scheduler=cosine_lr)],
                  teacher=signal_, backend=Backend("cpu"), batch_size=16, callbacks=callbacks).fit(
            BlobDataset(64), out=tmp_path / out, resume=resume)
        return student, teacher, projection

    whole = run("whole")
    with pytest.raises(RuntimeError, match="simulated"):
        run("split", callbacks=[Crash()])
    resumed = run("split", resume=True)
    for a, b in zip(whole, resumed):
        for x, y in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(x, y)


class _Poison(Callback):
    """Makes the ``poisoned`` loss return ``value`` for the micro-batch(es) of optimizer step ``at``."""

    def __init__(self, at: int, value: float, micro: int | None = None) -> None:
        self.at, self.value, self.micro = at, value, micro
        self.step, self.calls, self.weights = 0, 0, {}

    def on_step_end(self, distiller, logs) -> None:
        self.step = distiller.global_step
        self.calls = 0
        self.weights[self.step] = {k: v.clone() for k, v in distiller.student.state_dict().items()}

    def loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        value = torch.nn.functional.cross_entropy(logits, label)
        self.calls += 1
        if self.step + 1 == self.at and (self.micro is None or self.calls == self.micro):
            value = value * self.value
        return value


def _poisoned_run(poison: _Poison, out: Path, grad_accum_steps: int = 1) -> Distiller:
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.7, temperature=2.0),
                          Term("poisoned", poison.loss, target="label", weight=0.3))
    return _distiller(tiny_mlp(seed=2), tiny_mlp(hidden=32, seed=1), phases=[Phase("train", objective, epochs=2)],
                      callbacks=[poison], batch_size=8, checkpoint_every=2, grad_accum_steps=grad_accum_steps)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_before_the_update_and_writes_nothing(tmp_path, value):
    poison = _Poison(at=5, value=value)
    out = tmp_path / "run"
    distiller = _poisoned_run(poison, out)
    with pytest.raises(NonFiniteLossError) as caught:
        distiller.fit(BlobDataset(64), BlobDataset(16, seed=9), out=out)
    error = caught.value
    assert isinstance(error, KDError) and error.argument == "loss/poisoned"
    message = str(error)
    assert "optimizer step 5" in message and "phase 'train'" in message and "(step 4) is kept" in message
    assert distiller.global_step == 4
    # the bad step never reached the weights: they are still those after step 4, and finite
    for name, tensor in distiller.student.state_dict().items():
        assert torch.equal(tensor, poison.weights[4][name]) and torch.isfinite(tensor).all()
    # the last checkpoint is the step-4 one; no final, best or later checkpoint was written
    assert json.loads((out / "checkpoints" / "last.json").read_text())["global_step"] == 4
    state = load_state(out / "checkpoints" / "last.safetensors")
    assert all(torch.equal(state["student"][k], poison.weights[4][k]) for k in poison.weights[4])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.json", "last.safetensors"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4


def test_a_non_finite_loss_in_an_earlier_micro_batch_is_caught(tmp_path):
    poison = _Poison(at=3, value=float("nan"), micro=1)  # the first of the group's two micro-batches
    distiller = _poisoned_run(poison, tmp_path / "run", grad_accum_steps=2)
    with pytest.raises(NonFiniteLossError) as caught:
        distiller.fit(BlobDataset(64), out=tmp_path / "run")
    assert caught.value.argument == "loss/total" and "earlier micro-batch" in str(caught.value)
    assert "optimizer step 3" in str(caught.value) and distiller.global_step == 2


def test_a_run_stopped_by_a_nan_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    poison = _Poison(at=6, value=float("nan"))
    with pytest.raises(NonFiniteLossError):
        _poisoned_run(poison, out).fit(BlobDataset(64), out=out)
    clean = _Poison(at=0, value=1.0)
    resumed = _poisoned_run(clean, out).fit(BlobDataset(64), out=out, resume=True)
    reference = _poisoned_run(_Poison(at=0, value=1.0), tmp_path / "ref").fit(BlobDataset(64), out=tmp_path / "ref")
    for name, tensor in reference.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[name], tensor)


class _BareEncoder(nn.Module):
    """Returns hidden states under a key other than "logits" (as a headless encoder does)."""

    def __init__(self, width: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(8, width), nn.Tanh())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"last_hidden_state": self.body(x)}


def test_bare_encoders_distil_through_taps_and_a_logits_term_says_there_are_none(tmp_path):
    from kd_core import HiddenMSE

    student, teacher = _BareEncoder(6, seed=2), _BareEncoder(12, seed=1)
    objective = Objective(Term("hidden", HiddenMSE(6, 12), student="body", teacher="body"))
    before = student.body[0].weight.detach().clone()
    _distiller(student, teacher, phases=[Phase("feat", objective, epochs=1)]).fit(BlobDataset(32), out=tmp_path / "a")
    assert not torch.equal(before, student.body[0].weight)  # it trained: no logits were needed
    logits_term = Objective(Term("kd", kl_divergence, teacher="logits"), Term("hidden", HiddenMSE(6, 12),
                                                                           student="body", teacher="body"))
    with pytest.raises(TapError, match=r"kd\.student: expected a student whose forward returns logits, "
                                       r"received 'dict'\. the term compares logits; for a bare encoder"):
        _distiller(student, teacher, phases=[Phase("kd", logits_term, epochs=1)]).fit(BlobDataset(32),
                                                                                     out=tmp_path / "b")
    # outside the engine (a custom loop), the term itself names what is missing
    outputs = {"body": torch.zeros(2, 6)}
    with pytest.raises(TapError, match=r"kd\.student: expected one of the student's outputs \['body'\], "
                                       r"received 'logits'\. the student's forward returned no logits"):
        logits_term(outputs, {"body": torch.zeros(2, 12), "logits": torch.zeros(2, 3)}, {})


def test_fit_writes_a_report_and_a_training_plot(tmp_path):
    teacher = tiny_mlp(hidden=32, seed=1)
    phases = [Phase("warm", kd_objective(temperature=4.0), epochs=2), Phase("cool", kd_objective(1.0), epochs=1)]
    out = tmp_path / "run"
    result = _distiller(tiny_mlp(seed=2), teacher, phases=phases).fit(BlobDataset(48), BlobDataset(32, seed=1),
                                                                       out=out)
    report = (out / "report.md").read_text()
    assert result.run.report == out / "report.md"
    assert "| warm | 2 | kd (w=0.7, T=4) + ce (w=0.3) |" in report
    assert "| cool | 1 | kd (w=0.7, T=1) + ce (w=0.3) |" in report
    # the best and final validation rows of each phase, with the history's own values (accuracy in %)
    warm, cool = result.history[:2], result.history[2:]
    best_warm = warm[1] if warm[1]["val/accuracy"] > warm[0]["val/accuracy"] else warm[0]
    row = (f"| warm | best val/accuracy | {best_warm['epoch']} | {100 * best_warm['val/accuracy']:.2f} | "
           f"{best_warm['val/nll']:.4f} | {100 * best_warm['val/ece']:.2f} | {best_warm['val/brier']:.4f} |")
    assert row in report
    assert f"| warm | final | 2 | {100 * warm[1]['val/accuracy']:.2f} | {warm[1]['val/nll']:.4f} |" in report
    assert f"| cool | final | 1 | {100 * cool[0]['val/accuracy']:.2f} | {cool[0]['val/nll']:.4f} |" in report
    assert "| phase | row | epoch | accuracy (%) | nll | ece (%) | brier |" in report
    # every checkpoint named is there
    for name in ("best-warm.safetensors", "best-cool.safetensors", "best.safetensors", "final.safetensors",
                 "last.safetensors"):
        assert f"`checkpoints/{name}`" in report and (out / "checkpoints" / name).is_file()
    assert f"({100 * best_warm['val/accuracy']:.2f} %, epoch {best_warm['epoch']})" in report
    assert "](plots/training.png)" in report
    assert (out / "plots" / "training.png").read_bytes().startswith(b"\x89PNG")


def test_fit_without_validation_reports_its_losses(tmp_path):
    out = tmp_path / "run"
    _distiller(tiny_mlp(seed=2)).fit(BlobDataset(32), out=out)
    report = (out / "report.md").read_text()
    assert "No validation set was given" in report and "best val/accuracy" not in report
    assert "`checkpoints/final.safetensors`" in report and "best-train" not in report
    assert (out / "plots" / "training.png").read_bytes().startswith(b"\x89PNG")
