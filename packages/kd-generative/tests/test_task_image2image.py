"""The image-to-image task: a user's folders as splits, the evaluator's scores, and bad input refused before
training as kd errors naming the recipe field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, KDError
from kd_generative.cli import main
from kd_generative.metrics import psnr
from kd_generative.tasks import GanConfig, PairedData, TeacherConfig, check_geometry, image_task
from kd_generative.tasks.evaluate import translation_evaluator, translation_validator
from kd_generative.tasks.splits import split_pairs
from PIL import Image
from torch import nn

TINY_TEACHER = TeacherConfig(depth=2, base=4, epochs=1, batch_size=4)


def _folders(root: Path, count: int = 10, size: int = 20) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    a, b = root / "A", root / "B"
    a.mkdir()
    b.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(a / f"p{i:02d}.png")
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(b / f"p{i:02d}.png")
    return a, b


def test_a_users_folders_become_train_val_and_test_splits(tmp_path: Path, data_home: Path) -> None:
    a, b = _folders(tmp_path)
    data = PairedData(source=f"folder:{a},{b}", size=16, in_channels=1)
    task = image_task(data, TINY_TEACHER, [1, 2], GanConfig(n_layers=1))
    sizes = task.data.sizes()
    assert sizes == {"train": 6, "val": 2, "test": 2}
    item = task.data.train[0]
    assert item["input"].shape == (1, 16, 16) and item["target"].shape == (3, 16, 16)
    assert float(item["input"].min()) >= -1.0 and float(item["input"].max()) <= 1.0
    sources = [s for split in (task.data.train, task.data.val, task.data.test) for s in split.sources]
    assert sorted(sources) == [f"p{i:02d}" for i in range(10)]  # every pair in exactly one split
    assert task.key["source"] == "folder" and len(task.key["files"]["A"]) == 10
    student = task.student(0)
    assert student(task.example_batch(2)["input"]).shape == (2, 3, 16, 16)
    assert torch.equal(next(task.student(0).parameters()), next(student.parameters()))  # same seed, same init


def test_too_few_pairs_for_the_splits_name_the_source(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, count=4)
    data = PairedData(source=f"folder:{a},{b}", size=16)
    with pytest.raises(ConfigError, match=r"data\.source"):
        image_task(data, TINY_TEACHER, [1, 2], GanConfig(n_layers=1))


def test_split_pairs_is_deterministic(tmp_path: Path) -> None:
    from kd_generative.data import read_folder_pairs

    pairs = read_folder_pairs(*_folders(tmp_path), 16)
    one, two = split_pairs(pairs, 0.2, 0.2, 3, "x"), split_pairs(pairs, 0.2, 0.2, 3, "x")
    assert all(one[k].sources == two[k].sources for k in one)


def test_geometry_checks_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.depth") as caught:
        check_geometry(32, 6, None)
    assert "at most 5" in str(caught.value)
    with pytest.raises(ConfigError, match=r"gan\.n_layers"):
        check_geometry(16, 2, GanConfig(n_layers=3))
    check_geometry(32, 5, GanConfig(n_layers=2))


class _Shift(nn.Module):
    """Image out = the first input channel repeated to RGB, plus ``offset`` (a tiny stand-in generator)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1].expand(-1, 3, -1, -1) * 0.5 + self.offset).clamp(-1, 1)


def test_the_evaluator_scores_against_the_targets_and_the_teacher(data_home: Path) -> None:
    from kd_generative.metrics import feature_network

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1, torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    batches = [{"input": x[:2], "target": y[:2]}, {"input": x[2:], "target": y[2:]}]
    teacher, student = _Shift(0.0), _Shift(0.1)
    net = feature_network(steps=2)
    evaluate = translation_evaluator(lambda: teacher, lambda: net)
    scores = evaluate(student, batches)
    images = student(x).detach()
    assert scores["psnr"] == pytest.approx(float(psnr(images, y)), rel=1e-5)
    assert scores["l1_teacher"] == pytest.approx(0.1, abs=1e-5)
    assert {"ssim", "perceptual", "frechet", "psnr_teacher", "ssim_teacher", "frechet_teacher"} <= set(scores)
    assert not any(k.endswith("_teacher") for k in evaluate(teacher, batches))  # the teacher against itself: none
    assert set(translation_validator(student, batches)) == {"psnr", "l1"}


@pytest.mark.parametrize(("setting", "field"), [
    (["data.source=sketch"], "data.source"),
    (["teacher.depth=6"], "teacher.depth"),
    (["data.size=16", "teacher.depth=2", "gan.n_layers=3"], "gan.n_layers"),
    (["arms=[kd,distill]"], "arms"),
    (["loss.feature_taps=[up.9]", "data.size=16", "teacher.depth=2", "teacher.base=4", "data.crops=2",
      "data.photos=[skimage/chelsea,skimage/coffee,skimage/rocket]", "arms=[kd]"], "up.9"),
])
def test_bad_recipes_fail_before_training_naming_the_field(tmp_path: Path, data_home: Path, setting: list[str],
                                                           field: str, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [arg for s in setting for arg in ("--set", s)]
    code = main(["distill", "--recipe", "pix2pix-compact", "--out", str(tmp_path / "run"), *overrides])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and field in error
    assert not (tmp_path / "run").exists()  # refused before any run directory
    assert not (data_home / "teachers").exists()  # and before any teacher training


def test_errors_are_kd_errors() -> None:
    assert issubclass(ConfigError, KDError)
