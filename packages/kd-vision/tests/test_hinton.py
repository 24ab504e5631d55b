"""The Hinton KD plan: its objective, an end-to-end run with tiny settings, and the paper's claim (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kd_vision.cli import main
from kd_vision.methods.hinton import HintonConfig, KDConfig, distill_objective

TINY = ["--set", "data.train_size=60", "--set", "data.val_size=30", "--set", "data.test_size=60",
        "--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "latency_iterations=2", "--device", "cpu"]



def test_objective_is_alpha_t2_kl_plus_one_minus_alpha_ce() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    objective = distill_objective(KDConfig(temperature=3.0, alpha=0.7))
    got = objective({"logits": s}, {"logits": t}, {"label": y}).total
    p_t = torch.softmax(t / 3, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / 3, -1))).sum(-1).mean()
    ce = -torch.log_softmax(s, -1)[torch.arange(5), y].mean()
    assert math.isclose(float(got), float(0.7 * 9 * kl + 0.3 * ce), rel_tol=1e-5)


def test_tiny_run_writes_report_plots_results_and_reuses_its_teacher(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("**Teacher**", "**Plain KD against scratch**", "95 %", "ece %", "MACs", "CPU p50 ms"):
        assert needle in report
    for png in ("val_curves.png", "reliability.png", "headline.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert results["teacher"]["cost"]["params"] > 10 * results["arms"]["kd"]["cost"]["params"]
    assert set(results["arms"]) == {"kd", "scratch"} and set(results["arms"]["kd"]["seeds"]) == {"0"}
    assert results["comparisons"][0]["a"] == "kd" and results["comparisons"][0]["b"] == "scratch"
    assert results["comparisons"][0]["verdict"] == "inconclusive"  # one seed: no interval, no verdict
    assert (out / "teacher" / "checkpoints" / "final.safetensors").is_file()
    assert len(list((data_home / "teachers").glob("*.safetensors"))) == 1

    again = tmp_path / "again"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(again), *TINY]) == 0
    assert not (again / "teacher").exists()  # the cached teacher was reused, not retrained
    assert "reused from" in (again / "report.md").read_text()

    # fewer student samples from the same teacher pool (the recipe's teacher_train_size): the same teacher
    fewer = tmp_path / "fewer"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(fewer), *TINY, "--set", "data.train_size=40"]) == 0
    assert not (fewer / "teacher").exists()
    assert len(list((data_home / "teachers").glob("*.safetensors"))) == 1
    assert main(["eval", str(fewer), "--device", "cpu"]) == 0


def test_an_existing_run_is_not_overwritten(tmp_path: Path, data_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("keep: me\n")
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(out), *TINY]) == 2
    assert "--out: expected a new or empty run directory" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "keep: me\n"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_a_wrong_type_in_an_override_names_the_field(tmp_path: Path, data_home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["distill", "--recipe", "hinton-kd", "--out", str(tmp_path / "r"), "--set", "kd.temperature=hot"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "kd.temperature" in err and "hot" in err
    assert not (tmp_path / "r").exists()


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="colour"):
        HintonConfig.model_validate({"name": "x", "data": {"colour": "red"}})


@pytest.mark.slow
def test_distilled_student_beats_its_scratch_twin_over_three_seeds(tmp_path: Path) -> None:
    """The paper's claim on real digits: KD from a stronger teacher helps a small student (mean of 3 seeds)."""
    out = tmp_path / "demo"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(out), "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    (plain,) = results["comparisons"]
    assert plain["n"] == 3 and plain["verdict"] == "held"


def test_a_teacher_pool_smaller_than_the_students_is_refused(tmp_path: Path, data_home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = ["distill", "--recipe", "hinton-kd", "--out", str(tmp_path / "r"), "--set", "data.teacher_train_size=50",
            "--set", "data.train_size=60"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "teacher_train_size" in err and "50" in err
    assert not (tmp_path / "r").exists()


def test_students_train_on_the_head_of_the_teachers_pool() -> None:
    from kd_vision.tasks import VisionData, vision_splits

    splits = vision_splits(VisionData(train_size=50, teacher_train_size=120, val_size=20, test_size=30))[0]
    assert len(splits.teacher_train) == 120 and len(splits.train) == 50
    assert splits.train.indices.tolist() == splits.teacher_train.indices[:50].tolist()
    held_out = set(splits.val.indices.tolist()) | set(splits.test.indices.tolist())
    assert not held_out & set(splits.teacher_train.indices.tolist())
