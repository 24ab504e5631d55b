"""CES-KD and TAKD plans: config checks before training, tiny end-to-end runs, routing recorded in results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kd_vision.cli import main
from kd_vision.methods.ceskd import CESKDConfig, PoolPlan, build_net, direction

# 8x8 digits, two 1-epoch experts (w2 < w4), one seed: seconds, not minutes
TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=48", "--set", "data.teacher_train_size=64",
        "--set", "data.val_size=20", "--set", "data.test_size=40",
        "--set", "experts=[{model: digit-cnn-w2, epochs: 1, lr: 0.01}, {model: digit-cnn-w4, epochs: 1, lr: 0.01}]",
        "--set", "student.model=digit-cnn-w2", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "latency_iterations=2", "--device", "cpu"]



def test_tiny_ces_kd_run_writes_report_results_and_routes_by_curriculum(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "ces"
    args = ["distill", "--recipe", "ces-kd", "--out", str(out), *TINY,
            "--set", "compare=[ces-kd, anti-curriculum]", "--set", "curriculum.gamma_start=3.0"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for needle in ("CES-KD", "anti-curriculum", "Curriculum routing", "hardest 25 %"):
        assert needle in report
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]) == {"ces-kd", "anti-curriculum"}
    assert 0.0 <= results["seeds"]["ces-kd"]["0"]["accuracy"] <= 1.0
    assert [e["model"] for e in results["experts"]] == ["digit-cnn-w2", "digit-cnn-w4"]
    ces, anti = results["routing"]["ces-kd"], results["routing"]["anti-curriculum"]
    # 48 samples, K = 2, γ = 3 at the start: only u^3 >= 1/2 (u >= 0.794, the 10 hardest) go to the teacher
    assert ces["0.00"]["shares"] == pytest.approx([38 / 48, 10 / 48])
    assert ces["1.00"]["shares"] == pytest.approx([0.5, 0.5])
    assert ces["1.00"]["hardest_quarter_mean_expert"] == 2.0 and ces["1.00"]["easiest_quarter_mean_expert"] == 1.0
    assert anti["1.00"]["hardest_quarter_mean_expert"] == 1.0 and anti["1.00"]["easiest_quarter_mean_expert"] == 2.0
    assert len(list((out / "expert-logits").glob("expert*/cache.safetensors"))) == 2


def test_tiny_takd_run_distils_along_the_chain(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "takd"
    assert main(["distill", "--recipe", "takd", "--out", str(out), *TINY, "--set", "compare=[takd]"]) == 0
    assert "TAKD" in (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert [a["model"] for a in results["assistants"]] == ["digit-cnn-w2"]
    assert (out / "assistant1" / "checkpoints" / "final.safetensors").is_file()  # KD from the teacher
    assert (out / "takd-seed0" / "checkpoints" / "final.safetensors").is_file()
    # experts, assistants and the teacher are cached separately: 2 CE experts + 1 assistant
    assert len(list((data_home / "teachers").glob("*.safetensors"))) == 3


@pytest.mark.parametrize("recipe", ["ces-kd", "takd"])
def test_an_empty_assistant_pool_is_refused_before_training(recipe: str, tmp_path: Path, data_home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    args = ["distill", "--recipe", recipe, "--out", str(out), "--set", "experts=[{model: teacher-cnn, epochs: 1, "
            "lr: 0.01}]"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "experts" in err and "at least one assistant" in err
    assert not out.exists() and not (data_home / "teachers").exists()


def test_experts_must_grow_and_names_must_exist() -> None:
    with pytest.raises(ValueError, match="smallest to largest"):
        PoolPlan(CESKDConfig.model_validate({"name": "x", "experts": [
            {"model": "teacher-cnn", "epochs": 1, "lr": 0.1}, {"model": "digit-cnn-w4", "epochs": 1, "lr": 0.1}]}))
    with pytest.raises(ValueError, match=r"student\.model"):
        PoolPlan(CESKDConfig.model_validate({"name": "x", "student": {"model": "nope", "epochs": 1, "lr": 0.1}}))
    with pytest.raises(ValueError, match="compare"):
        CESKDConfig.model_validate({"name": "x", "compare": ["ces-kd", "magic"]})
    assert build_net("digit-cnn-w3").width == 3


def test_direction_reports_the_spec_orderings() -> None:
    summary = {v: {"accuracy_mean": a} for v, a in
               {"ces-kd": 90.0, "takd": 89.0, "kd": 88.0, "anti-curriculum": 91.0, "scratch": 80.0}.items()}
    checks = direction(summary)
    assert checks["ces-kd >= takd"] and checks["takd > kd"] and not checks["anti-curriculum < ces-kd"]
    assert direction({"kd": {"accuracy_mean": 1.0}})["ces-kd >= takd"] is None
