"""DigitCNN, the teacher/student pair and the model registry."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_vision.data.digits import make_splits
from kd_vision.models import DigitCNN, build_model, student_cnn, teacher_cnn
from kd_vision.models.cnn import MODELS
from torch import nn


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs(model: nn.Module, side: int = 28) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one image, counted from hooks.

    (``torch.utils.flop_counter`` gives the same numbers but takes seconds to warm up.)
    """
    total = 0

    def count(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += out[0].numel() * module.in_channels // module.groups * kernel
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 1, side, side))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("side", [28, 8, 4])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_for_28x28_and_8x8_inputs(name: str, side: int) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(5, 1, side, side))
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_options_are_honoured() -> None:
    model = DigitCNN(width=6, num_classes=7, in_channels=3, input_size=8)
    assert model(model.example_input(2)).shape == (2, 7)
    assert model.example_input().shape == (1, 3, 8, 8)
    assert model.num_features == 12
    assert model.fc.in_features == 12 * DigitCNN.POOL * DigitCNN.POOL
    assert build_model("student-cnn", num_classes=3)(torch.zeros(1, 1, 28, 28)).shape == (1, 3)


def test_feature_taps_exist() -> None:
    model = student_cnn()
    names = dict(model.named_modules())
    for tap in ("features", "features.0", "features.3", "features.4", "features.7", "pool", "fc"):
        assert tap in names
    assert isinstance(names["features.3"], nn.MaxPool2d) and isinstance(names["fc"], nn.Linear)
    seen = {}
    model.features[3].register_forward_hook(lambda module, args, out: seen.setdefault("out", out))
    model(torch.zeros(2, 1, 28, 28))
    assert seen["out"].shape == (2, 8, 14, 14)


def test_teacher_and_student_sizes() -> None:
    teacher, student = teacher_cnn(), student_cnn()
    assert (teacher.width, student.width) == (48, 8)
    assert _params(teacher) == 50_842 and _params(student) == 2_722
    assert _params(teacher) >= 18 * _params(student)
    assert _macs(teacher.eval()) == 8_475_840 and _macs(student.eval()) == 283_680
    assert _macs(teacher.eval()) >= 8 * _macs(student.eval())
    assert _macs(teacher.eval(), side=8) >= 8 * _macs(student.eval(), side=8)
    dropouts = [m for m in teacher.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropouts] == [0.3]
    assert not any(isinstance(m, nn.Dropout) for m in student.modules())


def test_unknown_model_lists_the_known_names() -> None:
    with pytest.raises(ConfigError) as caught:
        build_model("resnet18")
    assert caught.value.argument == "name"
    assert "'student-cnn'" in str(caught.value) and "'teacher-cnn'" in str(caught.value)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"width": 0}, "width"), ({"num_classes": 1}, "num_classes"), ({"in_channels": 0}, "in_channels"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"), ({"input_size": 3}, "input_size"),
    ({"width": 2.5}, "width"),
])
def test_bad_options_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DigitCNN(**kwargs)
    assert caught.value.argument == argument


def test_the_student_can_overfit_64_digits() -> None:
    train = make_splits("mnist5k", train_size=64, val_size=0, test_size=0, seed=0)["train"]
    inputs = torch.stack([train[i]["input"] for i in range(len(train))])
    labels = torch.stack([train[i]["label"] for i in range(len(train))])
    torch.manual_seed(1)
    model = student_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
