"""CES-KD and TAKD as arms: roles and comparisons, config checks before training, routing by hand, held-out
difficulty (fold membership by hand; a memorising scorer shows that no sample is scored by a model trained on it),
and a toy-size CLI run of each recipe (the pool, the assistants and the difficulty scorers trained once and
cached)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, load_recipe
from kd_vision.cli import main
from kd_vision.methods.ceskd import CESKDConfig, CurriculumConfig, TAKDConfig, arms, compare, difficulty_summary, task
from kd_vision.methods.difficulty import AtPositions, fold_assignment, held_out_difficulty, training_positions
from torch import nn
from torch.utils.data import default_collate

# 8x8 digits, two 1-epoch experts (w2 < w4), one seed: seconds, not minutes
TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=48", "--set", "data.teacher_train_size=64",
        "--set", "data.val_size=20", "--set", "data.test_size=40",
        "--set", "experts=[{model: digit-cnn-w2, epochs: 1, lr: 0.01}, {model: digit-cnn-w4, epochs: 1, lr: 0.01}]",
        "--set", "student.model=digit-cnn-w2", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "latency_iterations=1", "--device", "cpu"]
CLASSES = 3


class Memoriser(nn.Module):
    """A scorer that knows the label of exactly the samples it was trained on (certain, logit margin 50) and
    outputs uniform logits on every other sample: its cross-entropy is ~0 on a sample it saw, ln(C) on one it
    did not."""

    def __init__(self, dataset: list[dict[str, torch.Tensor]], positions: list[int]) -> None:
        super().__init__()
        self.known = {float(dataset[p]["input"]): int(dataset[p]["label"]) for p in positions}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), CLASSES)
        for row, value in enumerate(x.reshape(-1).tolist()):
            if value in self.known:
                logits[row, self.known[value]] = 50.0
        return logits


def _tiny_dataset(size: int) -> list[dict[str, torch.Tensor]]:
    """``size`` samples with distinct scalar inputs (the sample's position) and labels position mod C."""
    return [{"input": torch.tensor([float(i)]), "label": torch.tensor(i % CLASSES)} for i in range(size)]


def _ces(**changes) -> CESKDConfig:
    return CESKDConfig.model_validate({"name": "x", **changes})


def test_arms_roles_and_comparisons() -> None:
    config = _ces(arms=["ces-kd", "anti-curriculum", "takd", "kd", "scratch"])
    built = arms(config, task=None)
    assert {n: a.role for n, a in built.items()} == {"ces-kd": "variant", "anti-curriculum": "baseline",
                                                     "takd": "baseline", "kd": "kd", "scratch": "scratch"}
    assert [n for n, a in built.items() if a.fit is not None] == ["ces-kd", "anti-curriculum", "takd"]
    assert [t.name for t in built["kd"].phases()[0].objective.terms] == ["kd", "ce"]
    assert [t.name for t in built["scratch"].phases()[0].objective.terms] == ["ce"]
    assert compare(config, built) == [("kd", "scratch"), ("ces-kd", "kd"), ("ces-kd", "takd"),
                                      ("ces-kd", "anti-curriculum"), ("ces-kd", "scratch"), ("takd", "kd"),
                                      ("takd", "scratch")]
    takd = TAKDConfig.model_validate({"name": "x"})
    built = arms(takd, task=None)
    assert built["takd"].role == "variant"
    assert compare(takd, built) == [("kd", "scratch"), ("takd", "kd"), ("takd", "scratch")]


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="at least one assistant"):
        _ces(experts=[{"model": "teacher-cnn", "epochs": 1, "lr": 0.1}])
    with pytest.raises(ValueError, match="own arm"):
        _ces(arms=["takd", "kd"])
    with pytest.raises(ValueError, match="arms"):
        _ces(arms=["ces-kd", "magic"])
    with pytest.raises(ValueError, match="arms"):
        TAKDConfig.model_validate({"name": "x", "arms": ["takd", "ces-kd"]})  # no curriculum in takd


def test_the_pool_must_grow_and_digit_cnn_widths_build(tmp_path: Path, data_home: Path) -> None:
    context = RunContext(out=tmp_path / "unused", device="cpu")
    small = {"source": "sklearn8x8", "train_size": 20, "val_size": 10, "test_size": 10}
    shrinking = _ces(data=small, experts=[{"model": "teacher-cnn", "epochs": 1, "lr": 0.1},
                                          {"model": "digit-cnn-w4", "epochs": 1, "lr": 0.1}])
    with pytest.raises(ConfigError, match="smallest to largest") as info:
        arms(shrinking, task(shrinking, context))
    assert info.value.argument == "experts"
    config = _ces(data=small, student={"model": "digit-cnn-w3", "epochs": 1, "lr": 0.1})
    built = task(config, context)
    assert built.student(0).width == 3 and built.extras["build"](config.experts[0], "experts[0]").width == 4
    with pytest.raises(ConfigError, match=r"experts\[0\]\.model"):
        built.extras["build"](config.experts[0].model_copy(update={"model": "nope"}), "experts[0].model")


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


def test_tiny_ces_kd_run_writes_report_results_and_routes_by_curriculum(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "ces"
    args = ["distill", "--recipe", "ces-kd", "--out", str(out), *TINY,
            "--set", "arms=[ces-kd, anti-curriculum, kd, scratch]", "--set", "curriculum.gamma_start=3.0",
            "--set", "curriculum.folds=3"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for needle in ("**Plain KD against scratch**", "**ces-kd**", "**anti-curriculum**", "## Experts and assistants",
                   "## Curriculum routing", "hardest 25 %"):
        assert needle in report
    assert report.index("## Curriculum routing") < report.index("## Reproduce")
    results = json.loads((out / "results.json").read_text())
    assert {n: a["role"] for n, a in results["arms"].items()} == {"ces-kd": "variant", "anti-curriculum": "baseline",
                                                                  "kd": "kd", "scratch": "scratch"}
    assert 0.0 <= results["arms"]["ces-kd"]["seeds"]["0"]["accuracy"] <= 1.0
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [
        ("kd", "scratch"), ("ces-kd", "kd"), ("ces-kd", "anti-curriculum"), ("ces-kd", "scratch")]
    assert [e["model"] for e in results["pool"]["experts"]] == ["digit-cnn-w2"]  # E_2 is the study's teacher
    assert results["pool"]["assistants"] == []  # no takd arm: no assistant trained
    ces, anti = results["routing"]["ces-kd"], results["routing"]["anti-curriculum"]
    # 48 samples, K = 2, γ = 3 at the start: only u^3 >= 1/2 (u >= 0.794, the 10 hardest) go to the teacher
    assert ces["0.00"]["shares"] == pytest.approx([38 / 48, 10 / 48])
    assert ces["1.00"]["shares"] == pytest.approx([0.5, 0.5])
    assert ces["1.00"]["hardest_quarter_mean_expert"] == 2.0 and ces["1.00"]["easiest_quarter_mean_expert"] == 1.0
    assert anti["1.00"]["hardest_quarter_mean_expert"] == 1.0 and anti["1.00"]["easiest_quarter_mean_expert"] == 2.0
    # the experts' logits were computed once and served to both curriculum arms
    assert len(list((out / "expert-logits").glob("expert*/cache.safetensors"))) == 2
    # the teacher, expert E_1 and one held-out difficulty scorer per fold (each trained on the other two folds)
    assert len(list((data_home / "teachers").glob("*.safetensors"))) == 2 + 3
    difficulty = results["difficulty"]
    assert difficulty["difficulty"]["measure"] == "held-out" and difficulty["difficulty"]["folds"] == 3
    assert [(r["fold"], r["trained_on"], r["scored"]) for r in difficulty["scorers"]] == [(1, 32, 16), (2, 32, 16),
                                                                                         (3, 32, 16)]
    assert all((out / f"difficulty-fold{f}" / "checkpoints" / "final.safetensors").is_file() for f in (1, 2, 3))
    assert "## Difficulty scores" in report and "held-out, 3 folds" in report


def test_tiny_takd_run_distils_along_the_chain(tmp_path: Path, data_home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "takd"
    assert main(["distill", "--recipe", "takd", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    assert "**takd**" in report and "## Experts and assistants" in report and "Curriculum routing" not in report
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["takd", "kd", "scratch"]
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("kd", "scratch"), ("takd", "kd"),
                                                                  ("takd", "scratch")]
    assert [a["model"] for a in results["pool"]["assistants"]] == ["digit-cnn-w2"]
    assert (out / "assistant1" / "checkpoints" / "final.safetensors").is_file()  # KD from the teacher
    assert (out / "takd-seed0" / "checkpoints" / "final.safetensors").is_file()
    # the teacher and the assistant are cached separately (no CE expert is needed for TAKD)
    assert len(list((data_home / "teachers").glob("*.safetensors"))) == 2
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines() if ": " in line)
    assert float(printed["takd/seed0/accuracy"]) == pytest.approx(results["arms"]["takd"]["seeds"]["0"]["accuracy"])
    # a second run reuses the cached teacher and assistant
    again = tmp_path / "again"
    assert main(["distill", "--recipe", "takd", "--out", str(again), *TINY, "--set", "arms=[takd]"]) == 0
    assert "reused from" in json.loads((again / "results.json").read_text())["pool"]["assistants"][0]["note"]
    assert not (again / "assistant1").exists()


def test_the_two_recipes_load_with_their_methods() -> None:
    for name, arm_names in (("ces-kd", ["ces-kd", "takd", "kd", "scratch"]), ("takd", ["takd", "kd", "scratch"])):
        method, config = load_recipe(name, domain="vision")
        assert method.name == config.method == name and config.arms == arm_names
        assert config.data.source == "mnist5k" and config.data.teacher_train_size == 2500
        assert [e.model for e in config.experts] == ["digit-cnn-w4", "digit-cnn-w12", "teacher-cnn"]
    _, ces = load_recipe("ces-kd", domain="vision")  # the regime where plain KD beats scratch; held-out difficulty
    assert (ces.student.epochs, ces.kd.alpha, ces.curriculum.difficulty, ces.curriculum.folds) == (100, 0.5,
                                                                                                  "held-out", 5)


def test_folds_partition_the_train_split_and_each_scorer_trains_on_the_other_folds() -> None:
    folds = fold_assignment(10, 3, seed=0)
    assert sorted(p for f in folds for p in f) == list(range(10))  # every position in exactly one fold
    assert sorted(len(f) for f in folds) == [3, 3, 4]
    assert fold_assignment(10, 3, seed=0) == folds and fold_assignment(10, 3, seed=1) != folds
    by_hand = [[0, 3], [1, 4], [2, 5]]
    assert training_positions(by_hand, 0) == [1, 2, 4, 5]
    assert training_positions(by_hand, 1) == [0, 2, 3, 5]
    assert training_positions(by_hand, 2) == [0, 1, 3, 4]
    for bad in (1, 0, 11, True):
        with pytest.raises(ConfigError, match=r"curriculum\.folds") as info:
            fold_assignment(10, bad)
        assert info.value.argument == "curriculum.folds" and info.value.received == bad


def test_held_out_difficulty_never_scores_a_sample_with_a_model_that_trained_on_it() -> None:
    data = _tiny_dataset(6)
    folds, calls = [[0, 3], [1, 4], [2, 5]], []

    def train_scorer(fold: int, positions: list[int]) -> nn.Module:
        calls.append((fold, positions))
        return Memoriser(data, positions)

    scores = held_out_difficulty(data, folds, train_scorer, default_collate)
    assert calls == [(0, [1, 2, 4, 5]), (1, [0, 2, 3, 5]), (2, [0, 1, 3, 4])]
    # the memoriser is uniform on samples it never saw: every held-out score is exactly ln(3)
    assert scores == pytest.approx({i: math.log(CLASSES) for i in range(6)})
    # the in-sample score of a model trained on everything is ~0 for every sample: the leak held-out scoring avoids
    everything = Memoriser(data, list(range(6)))
    in_sample = held_out_difficulty(data, [[0, 1, 2, 3, 4, 5]], lambda f, p: everything, default_collate)
    assert max(in_sample.values()) < 1e-12


def test_scores_are_keyed_by_position_in_the_train_split() -> None:
    data = _tiny_dataset(6)
    view = AtPositions(data, [4, 1])
    assert len(view) == 2 and view[0]["index"] == 4 and float(view[1]["input"]) == 1.0
    scores = held_out_difficulty(data, [[4, 1], [0, 2, 3, 5]], lambda f, p: Memoriser(data, p), default_collate)
    assert sorted(scores) == list(range(6))


def test_curriculum_difficulty_is_held_out_by_default_and_refuses_one_fold() -> None:
    curriculum = _ces().curriculum
    assert (curriculum.difficulty, curriculum.folds, curriculum.fold_seed) == ("held-out", 5, 0)
    assert _ces(curriculum={"difficulty": "teacher"}).curriculum.difficulty == "teacher"
    with pytest.raises(ValueError, match="folds"):
        _ces(curriculum={"folds": 1})
    with pytest.raises(ValueError, match="difficulty"):
        _ces(curriculum={"difficulty": "student"})


def test_difficulty_summary_by_hand() -> None:
    held_out = {0: 0.5, 1: 0.005, 2: 2.0, 3: 1.0}
    in_sample = {0: 0.001, 1: 0.0, 2: 0.02, 3: 0.002}  # ranks 1, 0, 3, 2 against held-out's 1, 0, 3, 2
    summary = difficulty_summary(CurriculumConfig(folds=4), held_out, in_sample)
    assert summary["measure"] == "held-out" and summary["folds"] == 4
    assert summary["scores"] == pytest.approx({"median": 0.5, "below_0.01": 0.25})  # torch's median: the lower one
    assert summary["teacher_in_sample"] == pytest.approx({"median": 0.001, "below_0.01": 0.75})
    assert summary["rank_correlation_with_teacher_in_sample"] == pytest.approx(1.0)
    flipped = difficulty_summary(CurriculumConfig(difficulty="teacher"), held_out, {i: -v for i, v in held_out.items()})
    assert flipped["folds"] is None and flipped["rank_correlation_with_teacher_in_sample"] == pytest.approx(-1.0)


def test_more_folds_than_training_samples_is_refused_before_training(tmp_path: Path, data_home: Path) -> None:
    small = {"source": "sklearn8x8", "train_size": 20, "val_size": 10, "test_size": 10}
    config = _ces(data=small, curriculum={"folds": 21})
    with pytest.raises(ConfigError, match="number of training samples") as info:
        arms(config, task(config, RunContext(out=tmp_path / "unused", device="cpu")))
    assert (info.value.argument, info.value.received) == ("curriculum.folds", 21)
    assert not (data_home / "teachers").exists()
    teacher_scored = _ces(data=small, curriculum={"folds": 21, "difficulty": "teacher"})  # no folds: nothing to check
    assert set(arms(teacher_scored, task(teacher_scored, RunContext(out=tmp_path / "unused", device="cpu")))) == {
        "ces-kd", "takd", "kd", "scratch"}
