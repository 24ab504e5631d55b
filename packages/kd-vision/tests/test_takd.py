"""The TAKD arm (``kd_vision.methods.takd``) in the annealing-kd study: the assistant is distilled once from the
teacher on the teacher's pool and cached, then every student is distilled from the assistant."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from kd_core.errors import ConfigError
from kd_vision.cli import main
from kd_vision.methods.annealing import AnnealingConfig, arms, assistant_phases, compare, student_phases
from kd_vision.methods.takd import TeacherAssistant, takd_arm
from torch import nn

TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=48", "--set", "data.teacher_train_size=96",
        "--set", "data.val_size=24", "--set", "data.test_size=48", "--set", "teacher.epochs=1",
        "--set", "annealing.tau_max=2", "--set", "annealing.phase1_epochs=2", "--set", "annealing.phase2_epochs=1",
        "--set", "student.model=mlp-4", "--set", "student.batch_size=16", "--set", "assistant.model=mlp-8",
        "--set", "assistant.epochs=2", "--set", "assistant.batch_size=32", "--set", "arms=[annealing-kd, takd]",
        "--set", "seeds=[0]", "--set", "latency_iterations=2", "--device", "cpu"]


class _Run(SimpleNamespace):
    """A stand-in for ``ArmRun`` that records what its student is trained from."""

    def train(self, phases: list, signal: object) -> str:
        self.trained_with = (phases, signal)
        return "student"


def test_the_student_stage_distils_from_the_assistant_not_the_teacher() -> None:
    teacher, helper = nn.Linear(2, 2), nn.Linear(2, 2)
    assistant = TeacherAssistant("mlp-2", lambda: nn.Linear(2, 2), list, batch_size=8)
    assistant._model = helper  # already trained: the study's first TAKD seed did it
    arm = takd_arm(assistant, lambda: ["phases"], batch_size=4, description="takd")
    run = _Run(teacher=teacher)
    assert arm.fit(run) == "student" and arm.role == "baseline" and arm.uses_teacher
    phases, signal = run.trained_with
    assert phases == ["phases"] and list(signal.modules().values()) == [helper]


def test_the_assistant_needs_the_study_teacher() -> None:
    assistant = TeacherAssistant("mlp-2", lambda: nn.Linear(2, 2), list, batch_size=8)
    with pytest.raises(ConfigError, match="teacher"):
        assistant.model(_Run(teacher=None))


def test_the_assistant_is_distilled_like_hinton_kd_and_compared() -> None:
    config = AnnealingConfig.model_validate({"name": "t", "assistant": {"model": "mlp-64", "epochs": 7, "lr": 0.003}})
    (phase,) = assistant_phases(config)
    assert phase.epochs == 7 and phase.restore_best and [t.name for t in phase.objective.terms] == ["kd", "ce"]
    takd, kd = student_phases(config, "takd"), student_phases(config, "hinton-kd")
    assert [(p.epochs, [t.name for t in p.objective.terms]) for p in takd] == \
        [(p.epochs, [t.name for t in p.objective.terms]) for p in kd] == [(30, ["kd", "ce"])]
    built = arms(config, task=None)
    assert built["takd"].role == "baseline" and built["takd"].fit is not None
    assert ("annealing-kd", "takd") in compare(config, built) and ("takd", "hinton-kd") in compare(config, built)


def test_an_assistant_that_cannot_be_built_is_refused_before_any_run(tmp_path: Path, data_home: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *TINY, "--set", "assistant.model=nope"]) == 2
    assert "assistant.model" in capsys.readouterr().err and not out.exists()


def test_two_stages_on_tiny_digits(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *TINY]) == 0
    # stage 1: the assistant learned the teacher's pool with the KD loss: the recipe's disjoint pool leaves the
    # 96 − 48 = 48 samples that are not the students', so batch 32 makes 2 steps an epoch
    rows = [json.loads(line) for line in (out / "takd-assistant" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val/accuracy" in r]
    assert [r["step"] for r in epochs] == [2, 4] and any("loss/kd" in r for r in rows)
    record = json.loads((out / "assistant.json").read_text())
    assert record["model"] == "mlp-8" and record["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert "trained in this run" in record["source"]
    assert len(list((data_home / "teachers").glob("digits-takd-assistant-*.safetensors"))) == 1
    # stage 2: the student learned the students' split (48 samples, batch 16: 3 steps an epoch) with the KD loss
    rows = [json.loads(line) for line in (out / "takd-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val/accuracy" in r] == [3, 6, 9] and any("loss/kd" in r for r in rows)
    assert "TAKD teacher assistant" in (out / "report.md").read_text()
