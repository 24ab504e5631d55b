"""CIFAR-style ResNets/WRNs/VGGs and the model registry (fixed names and ``tv:<torchvision name>``)."""

from __future__ import annotations

import urllib.request

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from kd_core.taps import TapSet, resolve
from kd_vision.models import available_models, build_model, cifar, registry
from kd_vision.models.cnn import build_model as cnn_build_model
from kd_vision.models.cnn import student_cnn, teacher_cnn
from torch import nn

# The numbers documented in kd_vision.models.cifar (at 100 classes they equal the CRD benchmark's).
PARAMS_10 = {"resnet8x4": 1_210_410, "resnet32x4": 7_410_730, "resnet20": 272_474, "resnet56": 855_770,
             "wrn_16_2": 691_674, "wrn_40_2": 2_243_546, "vgg8": 3_918_858, "vgg13": 9_416_010}
PARAMS_100 = {"resnet8x4": 1_233_540, "resnet32x4": 7_433_860, "resnet20": 278_324, "resnet56": 861_620,
              "wrn_16_2": 703_284, "wrn_40_2": 2_255_156, "vgg8": 3_965_028, "vgg13": 9_462_180}
# (channels, side) of each stage output for a 32x32 input
STAGES = {
    "resnet20": {"layer1": (16, 32), "layer2": (32, 16), "layer3": (64, 8)},
    "resnet56": {"layer1": (16, 32), "layer2": (32, 16), "layer3": (64, 8)},
    "resnet8x4": {"layer1": (64, 32), "layer2": (128, 16), "layer3": (256, 8)},
    "resnet32x4": {"layer1": (64, 32), "layer2": (128, 16), "layer3": (256, 8)},
    "wrn_16_2": {"layer1": (32, 32), "layer2": (64, 16), "layer3": (128, 8)},
    "wrn_40_2": {"layer1": (32, 32), "layer2": (64, 16), "layer3": (128, 8)},
    "vgg8": {"layer1": (64, 32), "layer2": (128, 16), "layer3": (256, 8), "layer4": (512, 4), "layer5": (512, 2)},
    "vgg13": {"layer1": (64, 32), "layer2": (128, 16), "layer3": (256, 8), "layer4": (512, 4), "layer5": (512, 2)},
}
BLOCKS = {"resnet20": 3, "resnet56": 9, "resnet8x4": 1, "resnet32x4": 5, "wrn_16_2": 2, "wrn_40_2": 6}



def test_the_registry_covers_every_cifar_model_and_the_digit_cnns() -> None:
    assert set(cifar.CIFAR_MODELS) == set(PARAMS_10) == set(STAGES) == set(cifar.STAGE_TAPS)
    assert set(registry.MODELS) == set(PARAMS_10) | {"teacher-cnn", "student-cnn"}
    names = available_models()
    assert set(registry.MODELS) <= set(names)
    assert {"tv:resnet18", "tv:mobilenet_v3_small", "tv:vit_b_16"} <= set(names)
    assert available_models(include_torchvision=False) == sorted(registry.MODELS)


@pytest.mark.parametrize("name", sorted(PARAMS_10))
def test_shapes_parameter_counts_taps_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    assert count_parameters(model) == PARAMS_10[name]
    for tap in cifar.STAGE_TAPS[name]:
        resolve(model, tap)
    stage_taps = [*STAGES[name], "in:fc"]
    x = torch.randn(2, 3, 32, 32)
    out = TapSet(model, stage_taps).run(model, x)
    assert out["logits"].shape == (2, 10) and torch.isfinite(out["logits"]).all()
    for tap, (channels, side) in STAGES[name].items():
        assert out[tap].shape == (2, channels, side, side), tap
    assert out["in:fc"].shape == (2, model.num_features)
    out["logits"].square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0  # the gradient reaches the stem
    assert model.fc.weight.grad.abs().sum() > 0


def test_the_module_docstring_documents_these_counts() -> None:
    for name in PARAMS_10:
        assert f"| ``{name}`` | {PARAMS_10[name]:,} | {PARAMS_100[name]:,} |" in cifar.__doc__, name


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "vgg8", "resnet20"])
def test_hundred_classes_match_the_crd_benchmark_sizes(name: str) -> None:
    assert count_parameters(build_model(name, num_classes=100)) == PARAMS_100[name]


def test_the_other_hundred_class_sizes() -> None:
    for name in ("resnet32x4", "resnet56", "wrn_40_2", "vgg13"):
        assert count_parameters(build_model(name, num_classes=100)) == PARAMS_100[name]


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_residual_depth_gives_the_number_of_blocks(name: str) -> None:
    model = build_model(name)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [BLOCKS[name]] * 3


def test_in_channels_and_other_input_sizes() -> None:
    model = build_model("resnet20", num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)  # pooling is adaptive
    assert model.example_input(3).shape == (3, 1, 32, 32)
    vgg = build_model("vgg8", in_channels=4)
    assert vgg.layer1[0].in_channels == 4
    assert vgg(torch.randn(1, 4, 32, 32)).shape == (1, 10)


def test_vgg_has_batchnorm_and_resnet_shortcuts_follow_the_width_changes() -> None:
    vgg = build_model("vgg13")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vgg.modules()) == 10
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.modules()) == 10
    r8x4 = build_model("resnet8x4")
    # stem 32 -> layer1 64 needs a projection even at stride 1; resnet20's layer1 (16 -> 16) does not
    assert r8x4.layer1[0].downsample is not None and build_model("resnet20").layer1[0].downsample is None
    wrn = build_model("wrn_16_2")
    assert wrn.layer1[0].shortcut is not None and wrn.layer1[1].shortcut is None


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"num_classes": 1}, "num_classes"), ({"num_classes": 2.0}, "num_classes"), ({"in_channels": 0}, "in_channels"),
])
def test_bad_options_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_model("resnet20", **kwargs)
    assert caught.value.argument == argument


def test_bad_architecture_arguments() -> None:
    with pytest.raises(ConfigError) as caught:
        cifar.CifarResNet(21, (16, 16, 32, 64))
    assert caught.value.argument == "depth"
    with pytest.raises(ConfigError) as caught:
        cifar.WideResNet(18, 2)
    assert caught.value.argument == "depth"
    with pytest.raises(ConfigError) as caught:
        cifar.CifarVGG((1, 1, 1))
    assert caught.value.argument == "convs"


def test_digit_cnns_through_the_registry() -> None:
    assert count_parameters(build_model("teacher-cnn")) == count_parameters(teacher_cnn()) == 50_842
    assert count_parameters(build_model("student-cnn", num_classes=3)) == count_parameters(student_cnn(3))
    three = build_model("teacher-cnn", in_channels=3)
    assert three.in_channels == 3 and three.width == 48 and three(torch.randn(2, 3, 28, 28)).shape == (2, 10)
    assert [m.p for m in three.modules() if isinstance(m, nn.Dropout)] == [0.3]
    # the old entry point delegates to the registry
    assert isinstance(cnn_build_model("resnet20"), cifar.CifarResNet)


def test_torchvision_models_build_offline_and_expose_taps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    model = build_model("tv:resnet18", num_classes=10)
    assert type(model).__name__ == "ResNet" and model.fc.out_features == 10
    assert count_parameters(model) == 11_181_642  # torchvision resnet18 with a 10-way head
    out = TapSet(model, ["layer4", "in:fc"]).run(model.eval(), torch.randn(2, 3, 32, 32))
    assert out["logits"].shape == (2, 10) and out["layer4"].shape == (2, 512, 1, 1)
    assert out["in:fc"].shape == (2, 512)
    small = build_model("tv:mobilenet_v3_small", num_classes=5)
    resolve(small, "features.12")
    assert small.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ConfigError) as caught:
        build_model("tv:resnet18", in_channels=1)
    assert caught.value.argument == "in_channels"


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet18", "tv:resnet18"), ("wrn-16-2", "wrn_16_2"), ("resnet32x8", "resnet32x4"), ("tv:resnet19", "tv:resnet18"),
    ("teacher_cnn", "teacher-cnn"),
])
def test_unknown_names_list_the_nearest_names(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_model(name)
    assert caught.value.argument == "name"
    hint = caught.value.hint
    assert hint.startswith("nearest known names") and repr(expected) in hint


def test_a_hopeless_name_still_says_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as caught:
        build_model("zzz")
    assert "'resnet20'" in str(caught.value) and "tv:<name>" in str(caught.value)
    assert "nearest" not in caught.value.hint
