"""Class-incremental generative replay (replay-cil): generator checks, losses, metrics, variants, the
acceptance claim (replay forgets less than fine-tuning) and an end-to-end CLI run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core import Backend
from kd_core.errors import ConfigError, KDError
from kd_core.generators import ImageGenerator, check_generator
from kd_vision.cil.evaluation import IncrementalClassifier, IncrementalEvaluator, task_accuracies
from kd_vision.cil.generators import GaussianMixtureGenerator
from kd_vision.cil.heads import MASKED_LOGIT, SeenClassesForward
from kd_vision.cil.losses import IGNORE, labelled_cross_entropy, old_class_kl
from kd_vision.cil.metrics import (
    accuracy_after_each_task,
    average_incremental_accuracy,
    final_accuracy,
    forgetting,
)
from kd_vision.cil.nme import NearestMeanClassifier, last_linear
from kd_vision.cil.runner import StreamSettings, run_stream
from kd_vision.cil.stream import class_subset, make_tasks
from kd_vision.cil.training import VARIANTS, task_dataset, task_objective
from kd_vision.cli import main
from kd_vision.data.digits import MEAN, STD, area_weights, downsample_digits, load_digits, make_splits
from kd_vision.methods.common import TrainConfig
from kd_vision.methods.replay import DataConfig, ReplayConfig, arms, compare, mapped_generator_data, stream_splits

TASKS = [(0, 1), (2, 3), (4, 5)]
CLIP = ((0.0 - MEAN) / STD, (1.0 - MEAN) / STD)


@pytest.fixture(scope="module")
def digits() -> dict:
    """8x8 digits: a generator pool, a stream and a test split (disjoint)."""
    parts = make_splits("sklearn8x8", train_size=300, val_size=400, test_size=300, seed=0)
    return {"generator": parts["train"], "train": parts["val"], "test": parts["test"]}


@pytest.fixture(scope="module")
def gmm(digits: dict) -> GaussianMixtureGenerator:
    return GaussianMixtureGenerator.fit(digits["generator"], components=5, seed=0, clip=CLIP)


def settings(epochs: int = 1, per_class: int = 10) -> StreamSettings:
    return StreamSettings(train=TrainConfig(model="student-cnn", epochs=epochs, lr=5e-3, batch_size=32),
                          memory_per_class=5, generated_per_class=per_class)


class WrongGenerator:
    """Declares the data's shape but returns wrong batches: 28x28 images, or a class never requested."""

    image_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, mistake: str) -> None:
        self.mistake = mistake

    def generate(self, classes, per_class, seed):
        labels = torch.tensor(list(classes)).repeat_interleave(per_class)
        side = 28 if self.mistake == "shape" else 8
        if self.mistake == "unseen":
            labels[-1] = 9
        return {"input": torch.zeros(len(labels), 1, side, side), "label": labels}


# -- the generator ------------------------------------------------------------------------------------
def test_the_gaussian_mixture_generator_implements_the_protocol(digits: dict, gmm: GaussianMixtureGenerator) -> None:
    assert isinstance(gmm, ImageGenerator)
    assert gmm.image_shape == (1, 8, 8) and gmm.num_classes == 10 and gmm.classes == list(range(10))
    batch = gmm.generate([3, 7], per_class=4, seed=1)
    assert batch["input"].shape == (8, 1, 8, 8) and batch["input"].dtype == torch.float32
    assert batch["label"].tolist() == [3] * 4 + [7] * 4 and batch["label"].dtype == torch.long
    assert CLIP[0] - 1e-6 <= float(batch["input"].min()) and float(batch["input"].max()) <= CLIP[1] + 1e-6
    assert torch.equal(batch["input"], gmm.generate([3, 7], per_class=4, seed=1)["input"])
    assert not torch.equal(batch["input"], gmm.generate([3, 7], per_class=4, seed=2)["input"])
    # a class's samples do not depend on which other classes are asked for
    assert torch.equal(batch["input"][4:], gmm.generate([7], per_class=4, seed=1)["input"])


def test_generated_images_look_like_their_class(digits: dict, gmm: GaussianMixtureGenerator) -> None:
    """A nearest-class-mean classifier built on the real stream images labels most samples correctly."""
    real = digits["train"]
    flat = torch.stack([real[i]["input"] for i in range(len(real))]).reshape(len(real), -1)
    labels = torch.as_tensor(real.targets)
    means = torch.stack([flat[labels == c].mean(0) for c in range(10)])
    batch = gmm.generate(list(range(10)), per_class=20, seed=0)
    predicted = torch.cdist(batch["input"].reshape(200, -1), means).argmin(1)
    assert float((predicted == batch["label"]).float().mean()) > 0.8


def test_a_wrong_generator_is_refused_before_training(digits: dict, gmm, tmp_path: Path) -> None:
    for generator in (WrongGenerator("shape"), WrongGenerator("unseen"), "not a generator"):
        with pytest.raises(KDError, match="generator"):
            run_stream("D", TASKS, digits["train"], digits["test"], generator, settings(), 0, tmp_path / "r",
                       Backend(device="cpu"))
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written
    with pytest.raises(ConfigError, match=r"image_shape \(1, 8, 8\) like the data's, received \(1, 28, 28\)"):
        class Big(WrongGenerator):
            image_shape = (1, 28, 28)
        run_stream("C", TASKS, digits["train"], digits["test"], Big("none"), settings(), 0, tmp_path / "r",
                   Backend(device="cpu"))


# -- the generator's source: MNIST mapped onto the 8x8 stream ---------------------------------------------
def test_area_weights_and_downsampling_by_hand() -> None:
    assert area_weights(3, 2) == pytest.approx(np.array([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]]))
    assert area_weights(4, 2) == pytest.approx(np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    # 3x3 → 2x2, bright pixels at (0, 0) and (1, 1): area means 255·[[5/9, 1/9], [1/9, 1/9]]; stretched so the
    # brightest is 255, the others become 51 = 255/5; 17 levels: round(51·16/255) = 3 → (3·255 + 8) // 16 = 48
    image = np.zeros((1, 3, 3), dtype=np.uint8)
    image[0, 0, 0] = image[0, 1, 1] = 255
    assert downsample_digits(image, side=2, crop=0).tolist() == [[[255, 48], [48, 48]]]
    framed = np.zeros((1, 5, 5), dtype=np.uint8)
    framed[:, 1:4, 1:4] = image  # the crop removes a 1-pixel frame first
    assert downsample_digits(framed, side=2, crop=1).tolist() == [[[255, 48], [48, 48]]]
    with pytest.raises(ConfigError, match="crop"):
        downsample_digits(framed, side=4, crop=1)
    with pytest.raises(ConfigError, match="images"):
        downsample_digits(np.zeros((5, 5), dtype=np.uint8))


def test_mapped_mnist_has_the_streams_shape_value_grid_and_range() -> None:
    mnist, _ = load_digits("mnist5k")
    stream, _ = load_digits("sklearn8x8")
    mapped = downsample_digits(mnist[:200])
    assert mapped.shape == (200, *stream.shape[1:]) and mapped.dtype == stream.dtype == np.uint8
    assert set(np.unique(mapped)) <= set(np.unique(stream))  # scikit-learn's 17 levels, rescaled to 0-255
    assert (mapped.reshape(200, -1).max(1) == 255).all() and mapped.min() == 0


def test_a_generator_fitted_on_mnist_serves_the_sklearn_stream() -> None:
    data = DataConfig(generator_source="mnist5k", generator_size=200, train_size=300, test_size=200)
    splits = stream_splits(data)
    stream, fitted_on = splits.train, splits.val
    assert len(fitted_on) == 200 and len(stream) == 300 and len(splits.test) == 200
    assert stream.images.shape[1:] == (8, 8) and fitted_on[0]["input"].shape == stream[0]["input"].shape
    assert torch.equal(fitted_on[0]["input"], mapped_generator_data("mnist5k", 200)[0]["input"])
    generator = GaussianMixtureGenerator.fit(fitted_on, components=2, seed=0, clip=CLIP)
    check_generator(generator, tuple(stream[0]["input"].shape), list(range(10)))
    batch = generator.generate([0, 9], per_class=3, seed=0)
    real = torch.stack([stream[i]["input"] for i in range(len(stream))])
    assert batch["input"].shape == (6, 1, 8, 8)
    assert float(batch["input"].min()) >= float(real.min()) - 1e-6 and float(batch["input"].max()) <= float(
        real.max()) + 1e-6
    same = stream_splits(DataConfig(generator_size=200, train_size=300, test_size=200))  # the old layout
    assert same.val.images.shape[1:] == (8, 8) and len(same.val) == 200
    assert not set(same.val.indices) & set(same.train.indices)
    with pytest.raises(ValueError, match="generator_source"):
        DataConfig(source="mnist5k", generator_source="sklearn8x8")


# -- the nearest-mean-of-exemplars classifier ---------------------------------------------------------------
def test_nearest_mean_of_exemplars_by_hand_on_a_toy_embedding() -> None:
    """Embedding = the head's input (x itself). Class 0's exemplars [1, 0] and [0.8, 0.6] (unit norm) average
    to [0.9, 0.3] → normalised [0.9487, 0.3162]; class 2's [0, 1], [0, 2] → [0, 1]; class 1 has none."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3))
    assert last_linear(net) is net[1]
    exemplars = [{"input": torch.tensor(x), "label": torch.tensor(c)}
                 for x, c in (([1.0, 0.0], 0), ([0.8, 0.6], 0), ([0.0, 1.0], 2), ([0.0, 2.0], 2))]
    nme = NearestMeanClassifier(net, 3).fit_means(exemplars)
    root = math.sqrt(0.9)
    assert nme.means.tolist() == [pytest.approx([0.9 / root, 0.3 / root]), [0.0, 0.0], pytest.approx([0.0, 1.0])]
    assert nme.known.tolist() == [True, False, True]
    # [3, 1] normalises onto class 0's mean (distance 0); to class 2: 0.9 + (1 − 0.3162)² = 1.3675
    logits = nme(torch.tensor([[3.0, 1.0], [0.1, 5.0]]))
    assert logits[0].tolist() == [pytest.approx(0.0, abs=1e-6), MASKED_LOGIT, pytest.approx(-1.3675, abs=1e-4)]
    assert logits.argmax(1).tolist() == [0, 2]
    with pytest.raises(ConfigError, match=r"train\.model"):
        NearestMeanClassifier(torch.nn.Identity(), 3)


def test_exemplar_replay_and_nme_arms_run_a_stream(digits: dict, tmp_path: Path) -> None:
    current, memory = class_subset(digits["train"], (2, 3)), class_subset(digits["train"], (0, 1))
    assert len(task_dataset(VARIANTS["E"], current, memory, None)) == len(current) + len(memory)
    assert [t.name for t in task_objective(VARIANTS["E"], [0, 1], 2.0, 1.0).terms] == ["ce"]
    assert [t.name for t in task_objective(VARIANTS["F"], [0, 1], 2.0, 1.0).terms] == ["ce", "kd"]
    b, f = VARIANTS["B"], VARIANTS["F"]  # F trains exactly as B, G as D; only the classifier differs
    assert (f.memory, f.kd, f.generated, f.nme) == (b.memory, b.kd, b.generated, not b.nme) == (True, True, False, True)
    d, g = VARIANTS["D"], VARIANTS["G"]
    assert (g.generated_kd, g.generated_ce, g.nme) == (d.generated_kd, d.generated_ce, not d.nme) == (True, True, True)
    run = run_stream("F", TASKS[:1], digits["train"], digits["test"], None, settings(), 0, tmp_path / "F",
                     Backend(device="cpu"))  # one task: the memory holds classes 0 and 1, the only known means
    assert isinstance(run.model, NearestMeanClassifier) and run.model.known.tolist() == [True] * 2 + [False] * 8
    assert len(run.matrix) == 1 and all(0.0 <= a <= 1.0 for row in run.matrix for a in row)


# -- losses, head, metrics -------------------------------------------------------------------------------
def test_labelled_cross_entropy_skips_ignored_samples_and_never_returns_nan() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    target = torch.tensor([0, IGNORE, 1])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(10.0))) / 2
    assert math.isclose(float(labelled_cross_entropy(logits, target)), expected, rel_tol=1e-6)
    none = labelled_cross_entropy(logits.requires_grad_(), torch.full((3,), IGNORE))
    assert float(none.detach()) == 0.0
    none.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_old_class_kd_compares_only_the_old_columns() -> None:
    student = torch.tensor([[1.0, 0.0, 3.0, -1.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0, 9.0, 9.0]])
    value = old_class_kl(student, teacher, temperature=2.0, classes=(0, 1))
    p = torch.softmax(torch.tensor([0.0, 1.0]), -1)  # teacher / T over the old classes
    q = torch.softmax(torch.tensor([0.5, 0.0]), -1)  # student / T
    assert math.isclose(float(value.detach()), 4.0 * float((p * (p / q).log()).sum()), rel_tol=1e-5)
    value.backward()
    assert student.grad[0, 2:].abs().sum() == 0  # the new classes are left to the cross-entropy
    with pytest.raises(ConfigError, match="classes"):
        old_class_kl(student, teacher, classes=())


def test_unseen_classes_are_masked_and_get_no_gradient() -> None:
    head = torch.nn.Linear(3, 4)
    forward = SeenClassesForward([0, 2])
    logits = forward(head, {"input": torch.randn(5, 3)})
    assert logits[:, [1, 3]].eq(-1e4).all() and torch.isin(logits.argmax(-1), torch.tensor([0, 2])).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2, 0, 2, 0])).backward()
    assert head.weight.grad[[1, 3]].abs().sum() == 0 and head.weight.grad[[0, 2]].abs().sum() > 0


def test_metrics_by_hand_on_a_small_accuracy_matrix() -> None:
    matrix = [[0.9], [0.6, 0.8], [0.5, 0.7, 0.9]]
    assert accuracy_after_each_task(matrix) == pytest.approx([0.9, 0.7, 0.7])
    assert average_incremental_accuracy(matrix) == pytest.approx((0.9 + 0.7 + 0.7) / 3)
    assert final_accuracy(matrix) == pytest.approx(0.7)
    # task 0: best earlier 0.9 -> 0.5 (0.4); task 1: best earlier 0.8 -> 0.7 (0.1)
    assert forgetting(matrix) == pytest.approx(0.25)
    assert forgetting([[0.8], [0.9, 0.5]]) == pytest.approx(-0.1)  # backward transfer shows as negative
    assert forgetting([[0.8]]) == 0.0
    with pytest.raises(ConfigError, match="lower-triangular"):
        forgetting([[0.9, 0.1], [0.5, 0.5]])


# -- variants and stream ------------------------------------------------------------------------------------
def test_variants_differ_only_in_where_generated_images_go(digits: dict, gmm) -> None:
    current = class_subset(digits["train"], (2, 3))
    generated = gmm.generate([0, 1], per_class=3, seed=0)
    memory = class_subset(digits["train"], (0, 1))
    sizes = {v: len(task_dataset(VARIANTS[v], current, memory, generated)) for v in "ABCD"}
    assert sizes == {"A": len(current), "B": len(current) + len(memory), "C": sizes["B"] + 6, "D": sizes["B"] + 6}
    c_labels = [int(task_dataset(VARIANTS["C"], current, memory, generated)[i]["label"]) for i in range(-6, 0)]
    d_labels = [int(task_dataset(VARIANTS["D"], current, memory, generated)[i]["label"]) for i in range(-6, 0)]
    assert c_labels == [IGNORE] * 6 and d_labels == [0, 0, 0, 1, 1, 1]
    assert [t.name for t in task_objective(VARIANTS["A"], [0, 1], 2.0, 1.0).terms] == ["ce"]
    assert [t.name for t in task_objective(VARIANTS["B"], [0, 1], 2.0, 1.0).terms] == ["ce", "kd"]
    assert [t.name for t in task_objective(VARIANTS["D"], [], 2.0, 1.0).terms] == ["ce"]  # task 0: no teacher
    assert make_tasks(range(10), 2)[1] == (2, 3)
    with pytest.raises(ConfigError, match="classes_per_task"):
        make_tasks(range(10), 3)


def test_replay_forgets_less_than_fine_tuning(digits: dict, gmm, tmp_path: Path) -> None:
    """The issue's acceptance line, on real 8x8 digits: 3 tasks of 2 classes, a few epochs per task."""
    results = {}
    for variant in ("A", "D"):
        run = run_stream(variant, TASKS, digits["train"], digits["test"], gmm, settings(epochs=3, per_class=30), 0,
                         tmp_path / variant, Backend(device="cpu"))
        results[variant] = run.as_dict()
        assert (tmp_path / variant / "task2" / "checkpoints" / "final.safetensors").is_file()
    assert results["A"]["forgetting"] > 0.5  # fine-tuning all but erases the old tasks
    assert results["D"]["forgetting"] < results["A"]["forgetting"] - 0.2
    assert results["D"]["average_incremental_accuracy"] > results["A"]["average_incremental_accuracy"]
    assert np.isclose(results["D"]["final_accuracy"], np.mean(results["D"]["matrix"][-1]))


# -- the evaluator ----------------------------------------------------------------------------------------
def test_task_accuracies_and_the_incremental_evaluator_by_hand() -> None:
    tasks = [(0, 1), (2, 3)]
    labels = torch.tensor([0, 1, 2, 3])
    # sample 1 (class 1) prefers class 2: right while class 2 is masked (after task 0), wrong after task 1
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 1, 3, 0], [0, 0, 4, 0], [0, 0, 5, 1]])
    assert task_accuracies(logits, labels, tasks[:1]) == [1.0]
    assert task_accuracies(logits, labels, tasks) == [0.5, 0.5]  # [class 0 right, 1 wrong], [2 right, 3 wrong]
    evaluator = IncrementalEvaluator(tasks)
    batches = [{"input": logits, "label": labels}]
    plain = torch.nn.Identity()  # no history: one fixed model after every step
    # matrix [[1.0], [0.5, 0.5]]: A = (1.0, 0.5), average 0.75, final 0.5, forgetting 1.0 − 0.5
    assert evaluator(plain, batches, lambda m, b: m(b["input"])) == pytest.approx({
        "average_incremental_accuracy": 0.75, "final_accuracy": 0.5, "forgetting": 0.5,
        "accuracy_after_task1": 1.0, "accuracy_after_task2": 0.5})
    model = IncrementalClassifier(torch.nn.Identity(), 2)
    assert model.rows() == []
    model.record([[0.8], [0.1, 0.2]])  # earlier rows come from the history, the last from the batches
    assert [pytest.approx(row) for row in model.rows()] == [[0.8], [0.1, 0.2]]
    scores = evaluator(model, batches, lambda m, b: m(b["input"]))
    assert scores["average_incremental_accuracy"] == pytest.approx((0.8 + 0.5) / 2)
    assert scores["forgetting"] == pytest.approx(0.8 - 0.5)


# -- the recipe: arms on a Study -------------------------------------------------------------------------
TINY = ["--set", "seeds=[0,1]", "--set", "train.epochs=1", "--set", "data.generator_size=100",
        "--set", "data.train_size=150", "--set", "data.test_size=100", "--set", "stream.classes_per_task=5",
        "--set", "generator.per_class=5", "--set", "generator.components=2", "--set", "latency_iterations=0",
        "--set", "arms=[A,B,D,F]", "--device", "cpu"]


def test_arms_roles_and_comparisons() -> None:
    config = ReplayConfig.model_validate({"name": "t"})
    built = arms(config, None)
    assert {n: a.role for n, a in built.items()} == {"A-finetune": "scratch", "B-exemplars-kd": "kd",
                                                     "C-generated-kd": "baseline", "D-generated-replay": "variant",
                                                     "E-exemplar-replay": "baseline",
                                                     "F-exemplars-kd-nme": "baseline",
                                                     "G-generated-replay-nme": "baseline"}
    assert all(a.fit is not None for a in built.values())
    assert compare(config, built) == [("B-exemplars-kd", "A-finetune"), ("D-generated-replay", "B-exemplars-kd"),
                                      ("D-generated-replay", "A-finetune"), ("D-generated-replay", "C-generated-kd"),
                                      ("C-generated-kd", "B-exemplars-kd"), ("B-exemplars-kd", "E-exemplar-replay"),
                                      ("F-exemplars-kd-nme", "B-exemplars-kd"),
                                      ("D-generated-replay", "E-exemplar-replay"),
                                      ("D-generated-replay", "F-exemplars-kd-nme"),
                                      ("G-generated-replay-nme", "D-generated-replay"),
                                      ("G-generated-replay-nme", "F-exemplars-kd-nme")]
    assert config.reference_training().epochs == config.train.epochs == 15  # the reference trains like a task...
    longer = ReplayConfig.model_validate({"name": "t", "reference_epochs": 80})
    assert longer.reference_training().epochs == 80 and longer.reference_training().lr == config.train.lr  # or longer
    two = ReplayConfig.model_validate({"name": "t", "arms": ["D", "A"]})
    assert compare(two, arms(two, None)) == [("D-generated-replay", "A-finetune")]
    with pytest.raises(ValueError, match="include D"):
        ReplayConfig.model_validate({"name": "t", "arms": ["A", "B"]})


def test_tiny_study_writes_cil_metrics_and_paired_comparisons(tmp_path: Path, data_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fits = []
    original = GaussianMixtureGenerator.fit.__func__

    def counting(cls, *args, **kwargs):
        fits.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(GaussianMixtureGenerator, "fit", classmethod(counting))
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "replay-cil", "--out", str(out), *TINY]) == 0
    assert len(fits) == 1  # the generator is fitted once per study, for every arm and seed that replays
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["headline"] == "average_incremental_accuracy"
    assert list(results["arms"]) == ["A-finetune", "B-exemplars-kd", "D-generated-replay", "F-exemplars-kd-nme"]
    assert set(results["teacher"]["test"]) >= {"average_incremental_accuracy", "final_accuracy", "forgetting"}
    for name, arm in results["arms"].items():
        for seed in ("0", "1"):
            metrics = arm["seeds"][seed]
            stream = json.loads((out / f"{name}-seed{seed}" / "stream.json").read_text())
            assert stream["tasks"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and len(stream["matrix"]) == 2
            (first,), (a, b) = stream["matrix"]  # the test metrics are those of the stream's accuracy matrix
            assert metrics["average_incremental_accuracy"] == pytest.approx((first + (a + b) / 2) / 2)
            assert metrics["final_accuracy"] == pytest.approx((a + b) / 2)
            assert metrics["forgetting"] == pytest.approx(first - a)
            assert (out / f"{name}-seed{seed}" / "task1" / "checkpoints" / "final.safetensors").is_file()
    for c in results["comparisons"]:
        x, y = (results["arms"][n]["seeds"] for n in (c["a"], c["b"]))
        expected = [100 * (x[s]["average_incremental_accuracy"] - y[s]["average_incremental_accuracy"])
                    for s in ("0", "1")]
        assert c["differences"] == pytest.approx(expected) and c["n"] == 2
    assert [(c["a"][0], c["b"][0]) for c in results["comparisons"]] == [("B", "A"), ("D", "B"), ("D", "A"),
                                                                        ("F", "B"), ("D", "F")]
    report = (out / "report.md").read_text()
    for needle in ("**Plain KD against scratch**: **B-exemplars-kd**", "**D-generated-replay**",
                   "average_incremental_accuracy %", "joint-training reference", "generator fitted on mnist5k"):
        assert needle in report
    # re-scoring the saved students (their accuracy history travels in the checkpoint) gives the same numbers
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    scores = dict(line.rsplit(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    for name, arm in results["arms"].items():
        assert float(scores[f"{name}/seed1/average_incremental_accuracy"]) == pytest.approx(
            arm["seeds"]["1"]["average_incremental_accuracy"])


def test_a_bad_class_order_is_refused_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["distill", "--recipe", "replay-cil", "--out", str(tmp_path / "r"), "--set", "stream.class_order=[0,1,2]"]
    assert main(args) == 2
    assert "class_order" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
