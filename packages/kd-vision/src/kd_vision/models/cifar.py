"""CIFAR-sized classifiers in the conventions of the CRD benchmark ("RepDistiller").

The teacher/student zoo of Tian, Krishnan and Isola, *Contrastive Representation Distillation*
(ICLR 2020, arXiv:1910.10699), which most later KD papers reuse for CIFAR-100 tables. Written here from
the architecture descriptions; the layouts and widths follow that benchmark so that parameter counts
match the published ones (resnet8x4 1.23 M, resnet32x4 7.43 M, wrn_40_2 2.26 M, vgg8 3.97 M at 100 classes).

- **ResNet** (He et al., arXiv:1512.03385, CIFAR variant): a 3x3 stem, three stages of ``(depth - 2) / 6``
  post-activation basic blocks (strides 1, 2, 2), global average pooling, ``fc``. resnet20/56 have stem
  and stage widths 16/16/32/64; the "x4" variants resnet8x4/resnet32x4 have 32/64/128/256. A block gets
  a 1x1-conv + BN shortcut when its stride or width changes.
- **WRN-d-k** (Zagoruyko and Komodakis, *Wide Residual Networks*, arXiv:1605.07146): a 3x3 stem of 16
  channels, three stages of ``(d - 4) / 6`` pre-activation blocks of widths 16k/32k/64k, then BN-ReLU,
  pooling and ``fc``. A block whose width or stride changes has a bias-free 1x1-conv shortcut.
- **VGG** (Simonyan and Zisserman, arXiv:1409.1556) with BatchNorm: five stages of 3x3 conv-BN-ReLU
  (vgg8: one conv per stage, vgg13: two) of widths 64/128/256/512/512, a 2x2 max-pool after each of
  the first four, global average pooling and one ``fc``.

Every model takes ``[B, in_channels, H, W]`` (3x32x32 by default; pooling is adaptive, so any side that
survives the downsampling works) and returns logits ``[B, num_classes]``.

Sizes at 32x32 (``kd_core.metrics.count_parameters`` / ``count_macs``; MACs do not depend on the class
count beyond the ``fc`` layer):

| model | parameters, 10 classes | parameters, 100 classes | MACs, 10 classes |
|---|---|---|---|
| ``resnet8x4`` | 1,210,410 | 1,233,540 | 177.0 M |
| ``resnet32x4`` | 7,410,730 | 7,433,860 | 1,083.0 M |
| ``resnet20`` | 272,474 | 278,324 | 40.8 M |
| ``resnet56`` | 855,770 | 861,620 | 125.7 M |
| ``wrn_16_2`` | 691,674 | 703,284 | 101.1 M |
| ``wrn_40_2`` | 2,243,546 | 2,255,156 | 327.6 M |
| ``vgg8`` | 3,918,858 | 3,965,028 | 67.8 M |
| ``vgg13`` | 9,416,010 | 9,462,180 | 228.3 M |

Tap paths (module outputs; ``in:fc`` is the pooled, flattened penultimate feature of every model):

| family | stem | stage outputs (32x32 input) | before the classifier |
|---|---|---|---|
| ResNet | ``relu`` | ``layer1`` (32x32), ``layer2`` (16x16), ``layer3`` (8x8), after ReLU | ``avgpool``, ``in:fc`` |
| WRN | ``conv1`` | ``layer1``, ``layer2``, ``layer3`` (sums, before BN-ReLU) | ``relu`` (BN-ReLU'd), ``in:fc`` |
| VGG | ``layer1`` (32x32) | ``layer1`` ... ``layer5`` (32, 16, 8, 4, 2), after ReLU | ``avgpool``, ``in:fc`` |

Blocks inside a stage are ``layerN.i`` (e.g. ``layer3.4.bn2`` is the BN before the last ReLU of a
ResNet block). :data:`STAGE_TAPS` lists the stage taps of each model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["CIFAR_MODELS", "STAGE_TAPS", "CifarResNet", "CifarVGG", "WideResNet", "resnet8x4", "resnet20",
           "resnet32x4", "resnet56", "vgg8", "vgg13", "wrn_16_2", "wrn_40_2"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return value


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=bias)


def _init_weights(model: nn.Module) -> None:
    """He-normal convolutions (fan-out), unit BN scale and zero shift, zero linear bias."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


class _CifarModel(nn.Module):
    """Shared bookkeeping: class count, input channels, nominal input size and an example input."""

    num_classes: int
    in_channels: int
    input_size: int
    fc: nn.Linear

    def _set_io(self, num_classes: int, in_channels: int, input_size: int) -> None:
        self.num_classes = _check_int("num_classes", num_classes, 2)
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.input_size = _check_int("input_size", input_size, 1)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch ``[batch_size, in_channels, input_size, input_size]`` on the model's device."""
        device = self.fc.weight.device
        return torch.zeros(batch_size, self.in_channels, self.input_size, self.input_size, device=device)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class CifarResNet(_CifarModel):
    """A CIFAR ResNet of ``depth = 6n + 2`` with stem width ``widths[0]`` and stage widths ``widths[1:]``."""

    def __init__(self, depth: int, widths: Sequence[int], num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32) -> None:
        super().__init__()
        self._set_io(num_classes, in_channels, input_size)
        if _check_int("depth", depth, 8) % 6 != 2:
            raise ConfigError("depth", "6n + 2 for basic blocks (8, 20, 32, 56, ...)", depth)
        widths = list(widths)
        if len(widths) != 4 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ConfigError("widths", "4 positive integers (stem and three stages)", widths)
        blocks = (depth - 2) // 6
        self.depth = depth
        self.widths = tuple(widths)
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = self._stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = self._stage(widths[2], widths[3], blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        #: channels of the pooled feature (``in:fc``)
        self.num_features = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)
        _init_weights(self)

    @staticmethod
    def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, channels, stride)]
        layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv-BN-ReLU-(dropout)-conv, plus the shortcut.

    When the width or stride changes, the shortcut is a bias-free 1x1 conv applied to the block's
    BN-ReLU'd input (as in the WRN paper's code); otherwise it is the identity on the raw input.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(channels, channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``conv2(dropout(relu(bn2(conv1(a))))) + shortcut``, where ``a = relu(bn1(x))``."""
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(activated)))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(_CifarModel):
    """WRN-``depth``-``widen`` (``depth = 6n + 4``): stage widths 16k/32k/64k after a 16-channel stem."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0, input_size: int = 32) -> None:
        super().__init__()
        self._set_io(num_classes, in_channels, input_size)
        if _check_int("depth", depth, 10) % 6 != 4:
            raise ConfigError("depth", "6n + 4 (10, 16, 22, 28, 40, ...)", depth)
        _check_int("widen", widen, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError("dropout", "a probability in [0, 1)", dropout)
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.depth, self.widen, self.widths = depth, widen, widths
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.layer1 = self._stage(widths[0], widths[1], blocks, 1, dropout)
        self.layer2 = self._stage(widths[1], widths[2], blocks, 2, dropout)
        self.layer3 = self._stage(widths[2], widths[3], blocks, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        #: channels of the pooled feature (``in:fc``)
        self.num_features = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)
        _init_weights(self)

    @staticmethod
    def _stage(in_channels: int, channels: int, blocks: int, stride: int, dropout: float) -> nn.Sequential:
        layers = [WideBlock(in_channels, channels, stride, dropout)]
        layers += [WideBlock(channels, channels, 1, dropout) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarVGG(_CifarModel):
    """VGG with BatchNorm for 32x32 inputs: ``convs[i]`` conv-BN-ReLU units in stage ``i + 1`` (5 stages).

    Stage widths are 64/128/256/512/512; ``pool1`` ... ``pool4`` (2x2 max-pools) follow the first four
    stages, then ``avgpool`` (global) and ``fc``. The convolutions keep their bias, as in the benchmark.
    """

    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self, convs: Sequence[int], num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32) -> None:
        super().__init__()
        self._set_io(num_classes, in_channels, input_size)
        convs = list(convs)
        if len(convs) != 5 or not all(isinstance(c, int) and c >= 1 for c in convs):
            raise ConfigError("convs", "5 positive integers (convolutions per stage)", convs)
        self.convs = tuple(convs)
        channels = in_channels
        for stage, (count, width) in enumerate(zip(convs, self.WIDTHS), start=1):
            units: list[nn.Module] = []
            for _ in range(count):
                units += [_conv3x3(channels, width, bias=True), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
            self.add_module(f"layer{stage}", nn.Sequential(*units))
            if stage < 5:
                self.add_module(f"pool{stage}", nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        #: channels of the pooled feature (``in:fc``)
        self.num_features = self.WIDTHS[-1]
        self.fc = nn.Linear(self.WIDTHS[-1], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        for stage in range(1, 6):
            x = getattr(self, f"layer{stage}")(x)
            if stage < 5:
                x = getattr(self, f"pool{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-20: 3 blocks per stage, widths 16/16/32/64."""
    return CifarResNet(20, (16, 16, 32, 64), num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-56: 9 blocks per stage, widths 16/16/32/64."""
    return CifarResNet(56, (16, 16, 32, 64), num_classes, in_channels)


def resnet8x4(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-8x4 (CRD's usual student): 1 block per stage, widths 32/64/128/256."""
    return CifarResNet(8, (32, 64, 128, 256), num_classes, in_channels)


def resnet32x4(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-32x4 (CRD's usual teacher): 5 blocks per stage, widths 32/64/128/256."""
    return CifarResNet(32, (32, 64, 128, 256), num_classes, in_channels)


def wrn_16_2(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    """WRN-16-2: 2 blocks per stage, widths 32/64/128."""
    return WideResNet(16, 2, num_classes, in_channels)


def wrn_40_2(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    """WRN-40-2: 6 blocks per stage, widths 32/64/128."""
    return WideResNet(40, 2, num_classes, in_channels)


def vgg8(num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG-8 with BN as the CRD benchmark names it: one conv per stage (5 convs, then the fc)."""
    return CifarVGG((1, 1, 1, 1, 1), num_classes, in_channels)


def vgg13(num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG-13 with BN: two convs per stage (10 convs)."""
    return CifarVGG((2, 2, 2, 2, 2), num_classes, in_channels)


#: Builders by registry name: ``builder(num_classes, in_channels) -> nn.Module``.
CIFAR_MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet8x4": resnet8x4, "resnet32x4": resnet32x4, "resnet20": resnet20, "resnet56": resnet56,
    "wrn_16_2": wrn_16_2, "wrn_40_2": wrn_40_2, "vgg8": vgg8, "vgg13": vgg13,
}

_RESNET_TAPS = ("relu", "layer1", "layer2", "layer3", "avgpool", "in:fc", "fc")
_WRN_TAPS = ("conv1", "layer1", "layer2", "layer3", "relu", "in:fc", "fc")
_VGG_TAPS = ("layer1", "layer2", "layer3", "layer4", "layer5", "avgpool", "in:fc", "fc")

#: The documented taps of each model (stem, stages, pooled feature, logits layer), all resolvable.
STAGE_TAPS: dict[str, tuple[str, ...]] = {
    "resnet8x4": _RESNET_TAPS, "resnet32x4": _RESNET_TAPS, "resnet20": _RESNET_TAPS, "resnet56": _RESNET_TAPS,
    "wrn_16_2": _WRN_TAPS, "wrn_40_2": _WRN_TAPS, "vgg8": _VGG_TAPS, "vgg13": _VGG_TAPS,
}
