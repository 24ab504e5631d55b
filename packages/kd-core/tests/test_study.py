"""Study: arms × seeds through Distiller, paired comparisons with intervals and verdicts, results and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core import Backend
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.stats import paired_difference
from kd_core.study import Arm, Study, TrainSpec, supervised_phases
from kd_core.study_report import comparison_sentence
from kd_core.task import Splits, Task
from torch import nn
from torch.utils.data import Dataset


class Blobs(Dataset):
    """Three Gaussian blobs in 8 dimensions, items as dicts."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        centres = torch.tensor([[2.0] * 4 + [0.0] * 4, [0.0] * 4 + [2.0] * 4, [-2.0] * 8])
        self.x = centres[self.y] + 1.5 * torch.randn(n, 8, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"input": self.x[i], "label": self.y[i]}


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))


def blob_task(name: str = "blobs") -> Task:
    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _mlp(4)

    return Task(name=name, splits=lambda: Splits(Blobs(96, 0), Blobs(48, 1), Blobs(64, 2), Blobs(192, 3)),
                teacher=lambda: _mlp(32), student=student, key={"blobs": 1}, description="three Gaussian blobs")


def hinton_arms(train: TrainSpec) -> dict[str, Arm]:
    def kd() -> list:
        return train.phases(Objective(
            Term("kd", kl_divergence, teacher="logits", weight=0.9, temperature=4.0),
            Term("ce", cross_entropy, target="label", weight=0.1)))

    return {"scratch": Arm(lambda: supervised_phases(train), role="scratch", batch_size=32),
            "kd": Arm(kd, role="kd", batch_size=32)}


def test_study_runs_every_arm_and_seed_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "cache"))
    train = TrainSpec(epochs=2, lr=1e-2, batch_size=32)
    study = Study(blob_task(), hinton_arms(train), seeds=[0, 1], title="Blobs", teacher_training=TrainSpec(3, 1e-2),
                  backend=Backend(device="cpu"), latency_iterations=2,
                  sections=lambda results, run: [("Extra", f"{len(results['arms'])} arms in {run.name}\n")])
    result = study.run(tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["arms"]) == {"scratch", "kd"} and set(results["arms"]["kd"]["seeds"]) == {"0", "1"}
    assert results["teacher"]["test"]["accuracy"] > 0.5  # the blobs are learnable: the teacher is sound
    # the one comparison by default: kd against scratch, on paired seeds, as kd_core.stats computes it
    (cmp,) = result.comparisons
    acc = {arm: [100 * results["arms"][arm]["seeds"][s]["accuracy"] for s in ("0", "1")] for arm in ("kd", "scratch")}
    expected = paired_difference(acc["kd"], acc["scratch"], a_name="kd", b_name="scratch", metric="accuracy")
    assert (cmp.a, cmp.b, cmp.differences, cmp.verdict) == ("kd", "scratch", expected.differences, expected.verdict)
    assert results["comparisons"][0]["low"] == pytest.approx(expected.low)
    report = result.report.read_text()
    assert "**Teacher**" in report and "**Plain KD against scratch**" in report
    assert report.index("**Teacher**") < report.index("**Plain KD against scratch**")
    # the teacher gate: both checks ran (a scratch arm, class outputs), recorded and reported before any verdict
    assert [c["name"] for c in results["teacher"]["gate"]] == ["lead", "confidence"]
    assert report.index("**Teacher gate**") < report.index("**Plain KD against scratch**")
    assert "95 % CI" in report
    assert "## Extra\n\n2 arms in run" in report and report.index("## Extra") < report.index("## Reproduce")
    for plot in ("val_curves.png", "headline.png", "reliability.png"):
        assert (tmp_path / "run" / "plots" / plot).is_file()
    # the same seed gives every arm the same initial student: both arms start from one set of weights
    first = study.task.student(1).state_dict()
    again = study.task.student(1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    # the teacher was cached: a second study reuses it
    cached = list((tmp_path / "cache" / "teachers").glob("blobs-*.safetensors"))
    assert len(cached) == 1
    assert "reused" in study._teacher(tmp_path / "again", resume=False)[1]


def test_resumed_study_equals_the_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "cache"))
    train = TrainSpec(epochs=1, lr=1e-2, batch_size=32)

    def study() -> Study:
        return Study(blob_task(), hinton_arms(train), seeds=[0], title="Blobs", teacher_training=TrainSpec(2, 1e-2),
                     backend=Backend(device="cpu"), latency_iterations=0)

    full = study().run(tmp_path / "full").results
    again = study().run(tmp_path / "full", resume=True).results  # every arm finished: resume redoes nothing
    assert again["arms"]["kd"]["seeds"] == full["arms"]["kd"]["seeds"]


def test_comparison_sentences() -> None:
    win = paired_difference([12.0, 12.1, 11.9], [10.0, 10.0, 10.0], a_name="kd", b_name="scratch", metric="accuracy")
    assert comparison_sentence(win).startswith("**kd** beats **scratch** by 2.00 points")
    assert comparison_sentence(win).endswith("**held**.")
    loss = paired_difference([10.0, 10.0, 10.0], [11.0, 11.2, 11.1], a_name="kd", b_name="scratch",
                             metric="accuracy")
    assert "**kd** loses to **scratch** by 1.10 points" in comparison_sentence(loss)
    assert "-1.10" not in comparison_sentence(loss).split("(")[0]
    single = paired_difference([11.0], [10.0], a_name="kd", b_name="scratch", metric="accuracy")
    text = comparison_sentence(single)
    assert "n = 1" in text and "±" not in text and text.endswith("**inconclusive**.")
    ece = paired_difference([1.0, 1.1], [3.0, 3.2], a_name="kd", b_name="scratch", metric="ece",
                            higher_is_better=False)
    assert comparison_sentence(ece).startswith("**kd** beats **scratch**")


def test_bad_arms_and_pairs_are_named() -> None:
    task = blob_task()
    with pytest.raises(ConfigError, match="arms"):
        Study(task, {}, seeds=[0], title="x")
    with pytest.raises(ConfigError, match="seeds"):
        Study(task, hinton_arms(TrainSpec(1, 1e-2)), seeds=[0, 0], title="x", teacher_training=TrainSpec(1, 1e-2))
    with pytest.raises(ConfigError, match="compare"):
        Study(task, hinton_arms(TrainSpec(1, 1e-2)), seeds=[0], title="x", teacher_training=TrainSpec(1, 1e-2),
              compare=[("kd", "nope")])
    with pytest.raises(ConfigError, match="teacher_training"):
        Study(task, hinton_arms(TrainSpec(1, 1e-2)), seeds=[0], title="x")


def test_an_arm_with_its_own_fit_runs_through_the_studys_distiller(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom fit (e.g. a stream of tasks) gets the seeded student, the teacher and its run directory."""
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "cache"))
    train = TrainSpec(epochs=1, lr=1e-2, batch_size=32)
    seen = []

    def two_stages(run) -> nn.Module:
        seen.append((run.seed, run.teacher is not None, run.out.name))
        first = run.distiller(supervised_phases(train))
        first.fit(run.study.task.data.train, None, out=run.out / "stage1", config=run.config())
        return run.distiller(supervised_phases(train), seed=run.seed + 100).fit(
            run.study.task.data.train, run.study.task.data.val, out=run.out / "stage2", config=run.config()).student

    arms = {**hinton_arms(train), "staged": Arm(list, role="baseline", fit=two_stages)}
    result = Study(blob_task(), arms, seeds=[3], title="Blobs", teacher_training=TrainSpec(1, 1e-2),
                   backend=Backend(device="cpu"), latency_iterations=0).run(tmp_path / "run")
    assert seen == [(3, True, "staged-seed3")]
    assert (tmp_path / "run" / "staged-seed3" / "stage2" / "checkpoints" / "final.safetensors").is_file()
    assert set(result.results["arms"]["staged"]["seeds"]) == {"3"}


def test_a_task_validator_scores_every_epoch_and_the_evaluator_the_test_split(tmp_path: Path) -> None:
    from dataclasses import replace

    def validator(model, batches, forward) -> dict[str, float]:
        return {"accuracy": 0.5, "cheap": 1.0}

    task = replace(blob_task(), validator=validator)
    train = TrainSpec(epochs=1, lr=1e-2, batch_size=32)
    result = Study(task, {"scratch": Arm(lambda: supervised_phases(train), role="scratch")}, seeds=[0], title="B",
                   backend=Backend(device="cpu"), latency_iterations=0).run(tmp_path / "run")
    lines = (tmp_path / "run" / "scratch-seed0" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert any(r.get("val/cheap") == 1.0 for r in rows)
    assert "cheap" not in result.results["arms"]["scratch"]["seeds"]["0"]  # the test split: the full evaluator


def test_model_cost_feeds_the_batch_through_the_tasks_forward() -> None:
    from kd_core.study import model_cost

    model = _mlp(4)
    batch = {"features": torch.randn(1, 8), "label": torch.tensor([0])}
    cost = model_cost(model, batch, latency_iterations=2, forward=lambda m, b: m(b["features"]))
    assert cost["params"] == 8 * 4 + 4 + 4 * 3 + 3
    assert cost["macs"] == 8 * 4 + 4 * 3  # one sample through both linear layers
    assert cost["latency_ms_p50"] > 0


def test_an_arm_that_needs_no_teacher_trains_none_and_its_fit_metrics_join_the_results(tmp_path: Path) -> None:
    train = TrainSpec(epochs=1, lr=1e-2, batch_size=32)

    def own(run) -> nn.Module:
        assert run.teacher is None
        run.metrics["extra"] = 7.0
        distiller = run.distiller(supervised_phases(train))
        distiller.fit(run.study.task.data.train, None, out=run.out / "inner", config=run.config())
        return distiller.student

    arms = {"self": Arm(list, role="variant", needs_teacher=False, fit=own),
            "scratch": Arm(lambda: supervised_phases(train), role="scratch")}
    result = Study(blob_task(), arms, seeds=[0], title="B", backend=Backend(device="cpu"),
                   latency_iterations=0).run(tmp_path / "run")
    assert "teacher" not in result.results and not (tmp_path / "run" / "teacher").exists()
    assert result.results["arms"]["self"]["seeds"]["0"]["extra"] == 7.0
    assert (tmp_path / "run" / "self-seed0" / "checkpoints" / "final.safetensors").is_file()  # saved for eval


def test_a_task_that_brings_its_own_teacher_describes_where_it_came_from() -> None:
    """A ``teacher_trained`` task's summary reads its ``extras["teacher_note"]`` (filled when the teacher is
    built) instead of claiming the teacher was given with its weights; without a note it says so."""
    def teacher() -> nn.Module:
        extras["teacher_note"] = "trained by the task itself and cached"
        return _mlp(32)

    extras: dict = {}
    task = blob_task()
    task.teacher, task.teacher_trained, task.extras = teacher, True, extras
    study = Study(task, {"kd": Arm(list, role="kd")}, seeds=[0], title="Blobs", backend=Backend(device="cpu"))
    assert study._teacher(Path("unused"), resume=False)[1] == "trained by the task itself and cached"
    plain = blob_task()
    plain.teacher_trained = True
    study = Study(plain, {"kd": Arm(list, role="kd")}, seeds=[0], title="Blobs", backend=Backend(device="cpu"))
    assert study._teacher(Path("unused"), resume=False)[1] == "given with its weights, used as it is"


def test_a_regime_where_kd_loses_to_scratch_is_flagged_by_both_gates(tmp_path: Path) -> None:
    # a planted teacher, confidently wrong (it predicts class y + 1 mod 3 for every blob): KD towards it loses to
    # the scratch twin, and the report says so before any claim, as does results.json
    centres = torch.tensor([[2.0] * 4 + [0.0] * 4, [0.0] * 4 + [2.0] * 4, [-2.0] * 8])

    def wrong_teacher() -> nn.Module:
        teacher = nn.Linear(8, 3)
        with torch.no_grad():
            teacher.weight.copy_(centres[[2, 0, 1]])
            teacher.bias.zero_()
        return teacher

    task = blob_task("blobs-wrong-teacher")
    task = Task(name=task.name, splits=task.splits, teacher=wrong_teacher, student=task.student, key=task.key,
                teacher_trained=True, description="three Gaussian blobs, a confidently wrong teacher")
    train = TrainSpec(epochs=8, lr=3e-2, batch_size=32)
    result = Study(task, hinton_arms(train), seeds=[0, 1, 2], title="Wrong teacher", backend=Backend(device="cpu"),
                   latency_iterations=0).run(tmp_path / "run")
    (cmp,) = result.comparisons
    assert cmp.mean < 0  # KD towards the wrong teacher loses
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["kd_gate"]["name"] == "kd-beats-scratch" and not results["kd_gate"]["passed"]
    assert not {c["name"]: c["passed"] for c in results["teacher"]["gate"]}["lead"]
    report = result.report.read_text()
    assert "**KD gate**: **failed**: plain KD does not reliably beat scratch" in report
    assert "**Teacher gate**: **failed**" in report


def test_a_teacher_early_stopped_on_val_nll_ends_as_its_best_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "cache"))
    spec = TrainSpec(epochs=6, lr=2e-1, batch_size=16, best_on="nll")  # a high lr: val NLL rises after its best
    assert spec.monitor() == {"monitor": "val/nll", "mode": "min"} and supervised_phases(spec)[0].restore_best
    assert TrainSpec(3, 1e-2).key() == {"epochs": 3, "lr": 1e-2, "batch_size": 64, "weight_decay": 0.0}
    study = Study(blob_task("blobs-best"), hinton_arms(TrainSpec(1, 1e-2)), seeds=[0], title="Best",
                  teacher_training=spec, backend=Backend(device="cpu"), latency_iterations=0)
    teacher = study.teacher_model(tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "teacher" / "metrics.jsonl").read_text().splitlines()]
    val_nll = [r["val/nll"] for r in logged if "val/nll" in r]
    assert len(val_nll) == 6 and min(val_nll) < val_nll[-1] - 0.1  # the best epoch is not the last one
    ended = study.task.epoch_evaluator(teacher, study._batches(study.task.data.val), study.task.forward)
    assert ended["nll"] == pytest.approx(min(val_nll), abs=1e-5)


def test_restoring_the_best_epoch_by_a_metric_the_evaluator_lacks_is_an_error(tmp_path: Path) -> None:
    from kd_core.engine import Distiller

    data = Blobs(32, 0)
    distiller = Distiller(_mlp(4), TrainSpec(1, 1e-2, best_on="bleu").phases(
        Objective(Term("ce", cross_entropy, target="label"))), backend=Backend(device="cpu"), batch_size=16,
        progress=False, **TrainSpec(1, 1e-2, best_on="bleu").monitor())
    with pytest.raises(ConfigError, match=r"monitor.*val/accuracy.*val/bleu"):
        distiller.fit(data, Blobs(16, 1), out=tmp_path / "run")


def test_compare_arms_pairs_the_shared_seeds_and_skips_missing_values() -> None:
    from kd_core.study import compare_arms

    results = {"arms": {"kd": {"seeds": {"0": {"ece": 0.10}, "1": {"ece": 0.12}, "2": {"ece": 0.11}}},
                        "ce": {"seeds": {"0": {"ece": 0.15}, "1": {"ece": 0.16}}},
                        "bad": {"seeds": {"0": {"ece": float("nan")}, "1": {}}}}}
    c = compare_arms(results, "kd", "ce", "ece", higher_is_better=False, scale=100, label="student ece")
    assert c is not None and (c.n, c.metric, c.a, c.b) == (2, "student ece", "kd", "ce")
    assert c.differences == pytest.approx([-5.0, -4.0]) and c.mean == pytest.approx(-4.5)
    assert compare_arms(results, "kd", "bad", "ece") is None  # a NaN and a missing value
