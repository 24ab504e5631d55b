"""A user's own data and models through the CLI: image folders, tensor files, torchvision classifiers,
``module:function`` builders and weights files; and every bad input refused before any run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError
from kd_vision.cli import main
from kd_vision.methods.common import TrainConfig
from kd_vision.tasks import VisionData, build_vision_model, vision_splits
from PIL import Image
from safetensors.torch import save_file

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "latency_iterations=1", "--set", "data.image_size=16", "--device", "cpu"]


def image_folder(root: Path, classes: dict[str, tuple[int, int, int]] = COLOURS, per_class: int = 6) -> Path:
    """A folder of small noisy PNGs, one sub-folder per colour class."""
    rng = np.random.default_rng(0)
    for name, colour in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_folder_splits_deterministically_and_stratified(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "images")
    splits, classes, what, key = vision_splits(VisionData(source=f"imagefolder:{root}", image_size=16))
    again = vision_splits(VisionData(source=f"imagefolder:{root}", image_size=16))[0]
    assert classes == ["blue", "green", "red"] and "3 classes" in what
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 3)
    assert splits.test.indices == again.test.indices  # the same split every time
    assert sorted(int(splits.test[i]["label"]) for i in range(3)) == [0, 1, 2]  # one of each class
    assert splits.train[0]["input"].shape == (3, 16, 16)
    assert not set(splits.train.indices) & set(splits.test.indices)
    assert key["fingerprint"] == vision_splits(VisionData(source=f"imagefolder:{root}"))[3]["fingerprint"]


def test_image_folder_with_its_own_splits(tmp_path: Path) -> None:
    for split in ("train", "val"):
        image_folder(tmp_path / "split" / split, per_class=2)
    splits, classes, _, _ = vision_splits(VisionData(source=f"imagefolder:{tmp_path / 'split'}"))
    assert len(splits.train) == 6 and len(splits.val) == 6 and classes == ["blue", "green", "red"]


def test_tensors_file(tmp_path: Path) -> None:
    x = torch.randn(40, 1, 8, 8)
    y = torch.arange(40) % 2
    save_file({"inputs": x, "labels": y}, str(tmp_path / "d.safetensors"))
    np.savez(tmp_path / "d.npz", inputs=x.numpy(), labels=y.numpy())
    for name in ("d.safetensors", "d.npz"):
        splits, classes, _, _ = vision_splits(VisionData(source=f"tensors:{tmp_path / name}"))
        assert classes == ["0", "1"] and len(splits.train) + len(splits.val) + len(splits.test) == 40
        assert splits.test[0]["input"].shape == (1, 8, 8)


def test_torchvision_teacher_on_an_image_folder_end_to_end(tmp_path: Path, data_home: Path) -> None:
    """The issue's acceptance command: hinton-kd on a user's image folder with a tv:resnet18 teacher."""
    root = image_folder(tmp_path / "images")
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(out), "--set", f"data.source=imagefolder:{root}",
                 "--set", "teacher.model=tv:resnet18", "--set", "student.model=tv:mobilenet_v3_small", *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["sizes"]["test"] == 3 and set(results["arms"]) == {"kd", "scratch"}
    assert results["teacher"]["cost"]["params"] > 10_000_000  # a real resnet18 with a 3-class head
    assert "image folder" in (out / "report.md").read_text()


def test_a_teacher_given_with_weights_is_used_as_is(tmp_path: Path, data_home: Path) -> None:
    root = image_folder(tmp_path / "images")
    teacher = build_vision_model(TrainConfig(model="resnet8x4", epochs=1, lr=1e-3), "teacher", 3, 3)
    save_file(teacher.state_dict(), str(tmp_path / "teacher.safetensors"))
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "hinton-kd", "--out", str(out), "--set", f"data.source=imagefolder:{root}",
                 "--set", "teacher.model=resnet8x4", "--set", f"teacher.weights={tmp_path / 'teacher.safetensors'}",
                 "--set", "student.model=torchvision.models:mobilenet_v3_small", *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "given with its weights" in results["teacher"]["source"]
    assert not (out / "teacher").exists() and not (data_home / "teachers").exists()  # never trained here


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], *sets: str) -> str:
    out = tmp_path / "refused"
    args = ["distill", "--recipe", "hinton-kd", "--out", str(out), *FAST]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    assert not out.exists()  # refused before any run directory
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    return err


def test_bad_data_and_models_are_refused_naming_the_field(tmp_path: Path, data_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    one = image_folder(tmp_path / "one", {"red": COLOURS["red"]})
    assert "data.source" in _refused(tmp_path, capsys, f"data.source=imagefolder:{one}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    assert "data.source" in _refused(tmp_path, capsys, f"data.source=imagefolder:{tmp_path / 'empty'}")
    assert "data.source" in _refused(tmp_path, capsys, f"data.source=imagefolder:{tmp_path / 'missing'}")
    images = image_folder(tmp_path / "images")
    err = _refused(tmp_path, capsys, f"data.source=imagefolder:{images}", "student.model=tv:fasterrcnn_resnet50_fpn")
    assert "student.model" in err
    err = _refused(tmp_path, capsys, "student.model=tv:resnet18")  # 1-channel digits into a 3-channel model
    assert "student.model" in err and "1-channel" in err
    err = _refused(tmp_path, capsys, f"data.source=imagefolder:{images}", "student.model=os:system")
    assert "student.model" in err and "--trust os" in err


def test_weights_that_do_not_fit_and_a_different_label_set(tmp_path: Path, data_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    images = image_folder(tmp_path / "images")
    wrong = build_vision_model(TrainConfig(model="resnet20", epochs=1, lr=1e-3), "teacher", 3, 3)
    save_file(wrong.state_dict(), str(tmp_path / "resnet20.safetensors"))
    err = _refused(tmp_path, capsys, f"data.source=imagefolder:{images}", "teacher.model=resnet8x4",
                   f"teacher.weights={tmp_path / 'resnet20.safetensors'}")
    assert "teacher.weights" in err and "missing" in err
    four = build_vision_model(TrainConfig(model="resnet8x4", epochs=1, lr=1e-3), "teacher", 4, 3)
    save_file(four.state_dict(), str(tmp_path / "four.safetensors"))
    err = _refused(tmp_path, capsys, f"data.source=imagefolder:{images}", "teacher.model=resnet8x4",
                   f"teacher.weights={tmp_path / 'four.safetensors'}")
    assert "teacher.weights" in err and "shape" in err  # a 4-class teacher's head does not fit a 3-class task


def test_build_vision_model_errors_name_the_role() -> None:
    with pytest.raises(ConfigError) as info:
        build_vision_model(TrainConfig(model="tv:not_a_model", epochs=1, lr=1.0), "teacher", 3, 3)
    assert info.value.argument == "teacher.model"


def test_the_emoji_set_is_a_built_in_source(data_home: Path) -> None:
    splits, classes, what, key = vision_splits(VisionData(source="emoji", emoji_variants=2, train_size=40))
    assert len(classes) >= 5 and "emoji" in what and key["variants"] == 2
    assert len(splits.train) == 40 and splits.train[0]["input"].shape == (3, 32, 32)
    assert 0 <= int(splits.test[0]["label"]) < len(classes)
