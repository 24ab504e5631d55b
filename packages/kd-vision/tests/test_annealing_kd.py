"""The annealing-kd / mse-kd methods: their phases, arms, config checks, a tiny end-to-end study, and the paper's
claim (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core.annealing import AnnealedScale
from kd_core.engine import Callback, Distiller
from kd_core.errors import ConfigError
from kd_core.signals import FrozenTeacher
from kd_core.task import Splits
from kd_vision.cli import main
from kd_vision.methods.annealing import AnnealingConfig, arms, compare, held_out_pool, student_phases
from torch import nn
from torch.utils.data import Dataset

TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=48", "--set", "data.teacher_train_size=96",
        "--set", "data.val_size=24", "--set", "data.test_size=48", "--set", "teacher.epochs=1",
        "--set", "annealing.tau_max=2", "--set", "annealing.phase1_epochs=2", "--set", "annealing.phase2_epochs=1",
        "--set", "seeds=[0]", "--set", "latency_iterations=2", "--device", "cpu"]


def _config(**changes) -> AnnealingConfig:
    return AnnealingConfig.model_validate({"name": "t", **changes})


def test_each_arm_trains_through_its_own_phases() -> None:
    config = _config(annealing={"tau_max": 4, "phase1_epochs": 8, "phase2_epochs": 3}, student={"lr": 0.02})
    akd = student_phases(config, "annealing-kd")
    assert [(p.name, p.epochs, p.restore_best) for p in akd] == [("phase1", 8, True), ("phase2", 3, True)]
    scale = akd[0].objective.terms[0].options["scale"]
    assert isinstance(scale, AnnealedScale) and scale.temperatures() == [4, 4, 3, 3, 2, 2, 1, 1]
    assert not akd[1].objective.needs_teacher and akd[1].objective.terms[0].target == "label"
    mse = student_phases(config, "mse-kd")
    assert mse[0].objective.terms[0].options["scale"] == 1.0 and mse[0].restore_best
    kd, scratch = student_phases(config, "hinton-kd"), student_phases(config, "scratch")
    assert [p.epochs for p in kd] == [p.epochs for p in scratch] == [11]  # the same budget, E₁ + E₂
    assert [t.name for t in kd[0].objective.terms] == ["kd", "ce"]
    assert [t.name for t in scratch[0].objective.terms] == ["ce"]


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="tau_max"):
        _config(annealing={"tau_max": 0})
    with pytest.raises(ValueError, match="phase1_epochs"):
        _config(annealing={"tau_max": 10, "phase1_epochs": 5})
    _config(annealing={"tau_max": 10, "phase1_epochs": 5}, method="mse-kd", arms=["mse-kd"])  # nothing annealed
    with pytest.raises(ValueError, match="own arm"):
        _config(method="mse-kd", arms=["annealing-kd", "scratch"])
    with pytest.raises(ValueError, match="colour"):
        _config(student={"colour": "red"})
    # any build_model name: the model is only built when the plan runs
    assert _config(student={"model": "resnet8"}, teacher={"model": "resnet110", "epochs": 1, "lr": 0.1})


def test_arms_roles_and_comparisons() -> None:
    config = _config()
    built = arms(config, task=None)
    assert {n: a.role for n, a in built.items()} == {"annealing-kd": "variant", "mse-kd": "baseline",
                                                     "hinton-kd": "kd", "takd": "baseline", "scratch": "scratch"}
    assert built["scratch"].signal is None and built["annealing-kd"].signal is not None
    assert compare(config, built) == [("hinton-kd", "scratch"), ("annealing-kd", "hinton-kd"),
                                      ("annealing-kd", "scratch"), ("annealing-kd", "mse-kd"), ("mse-kd", "hinton-kd"),
                                      ("annealing-kd", "takd"), ("takd", "hinton-kd")]
    control = _config(method="mse-kd", arms=["mse-kd", "hinton-kd", "scratch"])
    assert arms(control, task=None)["mse-kd"].role == "variant"
    assert compare(control, arms(control, task=None))[1:] == [("mse-kd", "hinton-kd"), ("mse-kd", "scratch")]


def test_every_arm_ends_on_its_best_validation_epoch() -> None:
    """The uniform rule: every arm's last phase restores its best epoch; without it only annealing's phase I does."""
    config = _config(annealing={"tau_max": 2, "phase1_epochs": 2, "phase2_epochs": 1})
    for arm in ("annealing-kd", "mse-kd", "hinton-kd", "takd", "scratch"):
        assert student_phases(config, arm)[-1].restore_best, arm
    plain = _config(annealing={"tau_max": 2, "phase1_epochs": 2, "phase2_epochs": 1}, best_checkpoint=False)
    assert [p.restore_best for p in student_phases(plain, "annealing-kd")] == [True, False]
    assert [p.restore_best for p in student_phases(plain, "scratch")] == [False]


def test_a_disjoint_teacher_pool_leaves_out_the_students_samples() -> None:
    pool = list(range(10, 20))  # the students' train split is the pool's first 4 samples
    splits = held_out_pool(Splits(train=pool[:4], val=[0], test=[1], teacher_train=pool))
    assert list(splits.teacher_pool) == [14, 15, 16, 17, 18, 19] and splits.train == [10, 11, 12, 13]
    with pytest.raises(ConfigError, match="teacher_train_size"):
        held_out_pool(Splits(train=pool, val=[0], test=[1], teacher_train=pool))
    with pytest.raises(ConfigError, match="teacher_train_size"):
        held_out_pool(Splits(train=pool, val=[0], test=[1]))


class _Blobs(Dataset):
    """Two Gaussian blobs in 4-D, as the dict samples the engine reads."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) % 2
        self.inputs = torch.randn(size, 4, generator=generator) + 2.0 * self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input": self.inputs[i], "label": self.labels[i]}


class _Snapshots(Callback):
    """The student's weights after every epoch (all phases, in order)."""

    def __init__(self) -> None:
        self.after_epoch: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self.after_epoch.append({k: v.clone() for k, v in distiller.student.state_dict().items()})


def _fit_with_planted_scores(tmp_path: Path, config: AnnealingConfig, arm: str,
                             scores: list[float]) -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    """Train ``arm``'s phases on blobs with the validation accuracies ``scores``, one per epoch; return the student
    and its weights after every epoch."""
    planted = iter(scores)

    def evaluator(model: nn.Module, batches: object, forward: object) -> dict[str, float]:
        list(batches)  # type: ignore[call-overload]
        return {"accuracy": next(planted)}

    torch.manual_seed(0)
    spy, teacher = _Snapshots(), nn.Linear(4, 2)
    distiller = Distiller(nn.Linear(4, 2), student_phases(config, arm), teacher=FrozenTeacher(teacher),
                          batch_size=8, evaluator=evaluator, callbacks=[spy], progress=False)
    distiller.fit(_Blobs(32, 0), _Blobs(16, 1), out=tmp_path / arm)
    return distiller.student, spy.after_epoch


def _same(model: nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_student_scored_is_its_best_validation_epoch(tmp_path: Path) -> None:
    config = _config(annealing={"tau_max": 2, "phase1_epochs": 2, "phase2_epochs": 3}, student={"lr": 0.05})
    # scratch: 5 epochs, the best validation accuracy (0.9) is the 3rd
    student, epochs = _fit_with_planted_scores(tmp_path, config, "scratch", [0.2, 0.7, 0.9, 0.4, 0.5])
    assert _same(student, epochs[2]) and not _same(student, epochs[4])
    # annealing-KD: phase I's best is its 2nd epoch, phase II's (epochs 3-5) its 2nd, the 4th overall
    student, epochs = _fit_with_planted_scores(tmp_path, config, "annealing-kd", [0.3, 0.6, 0.2, 0.8, 0.5])
    assert _same(student, epochs[3]) and not _same(student, epochs[4])
    # without the rule the scored student is the last epoch
    plain = config.model_copy(update={"best_checkpoint": False})
    student, epochs = _fit_with_planted_scores(tmp_path / "plain", plain, "scratch", [0.2, 0.7, 0.9, 0.4, 0.5])
    assert _same(student, epochs[4])


def test_tiny_run_writes_report_and_results(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("**annealing-kd**", "**mse-kd**", "**hinton-kd**", "**scratch**", "ece %",
                   "**Plain KD against scratch**", "T per phase-I epoch: [2, 1]"):
        assert needle in report
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["annealing-kd", "mse-kd", "hinton-kd", "takd", "scratch"]
    for arm in results["arms"].values():
        assert 0.0 <= arm["seeds"]["0"]["accuracy"] <= 1.0
    assert [(c["a"], c["b"]) for c in results["comparisons"]][:2] == [("hinton-kd", "scratch"),
                                                                      ("annealing-kd", "hinton-kd")]
    assert (out / "plots" / "headline.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "teacher-outputs" / "meta.json").is_file()  # the teacher ran once; every arm read its logits
    # the two-phase arms ran both phases, restoring the best phase-I student; the scratch twin had no teacher
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("phase_name") for r in rows if "phase_name" in r} == {"phase1", "phase2"}
    assert any("loss/mse" in r for r in rows) and any("loss/ce" in r for r in rows)
    assert (out / "annealing-kd-seed0" / "checkpoints" / "best-phase1.safetensors").is_file()


def test_tau_max_below_one_is_refused_before_training(tmp_path: Path, data_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), "--set", "annealing.tau_max=0"]) == 2
    err = capsys.readouterr().err
    assert "annealing.tau_max" in err and "0" in err
    assert not out.exists() and not data_home.exists()  # nothing trained, not even the teacher
    assert main(["distill", "--recipe", "mse-kd", "--out", str(out), "--set", "annealing.tau_max=0"]) == 2
    assert not out.exists()


@pytest.mark.slow
def test_annealing_kd_beats_its_scratch_twin_over_three_seeds(tmp_path: Path) -> None:
    """The paper's claim on real digits, at the recipe's size: annealing-KD > scratch (mean of 3 seeds)."""
    out = tmp_path / "demo"
    args = ["distill", "--recipe", "annealing-kd", "--out", str(out), "--device", "cpu",
            "--set", "arms=[annealing-kd, scratch]", "--set", "seeds=[0, 1, 2]"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    (versus_scratch,) = [c for c in results["comparisons"] if (c["a"], c["b"]) == ("annealing-kd", "scratch")]
    assert versus_scratch["n"] == 3 and versus_scratch["mean"] > 0
