"""Small digit classifiers: one CNN family, a wide teacher and a narrow student.

``DigitCNN`` is two conv-BN-ReLU-maxpool blocks in ``features`` (taps ``features.0`` ... ``features.7``),
an adaptive average pool to 3x3 (which keeps coarse spatial layout; a global pool loses it and caps
accuracy far below what MNIST allows) and a linear ``fc``. Every conv uses 3x3 kernels with padding 1
and the pool is adaptive, so the same model runs on 28x28 MNIST and on 8x8 scikit-learn digits.

| model | width | parameters | MACs at 28x28 |
|---|---|---|---|
| ``teacher_cnn`` | 48 | 50,842 | 8.5 M |
| ``student_cnn`` | 8 | 2,722 | 0.28 M |
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["MODELS", "DigitCNN", "build_model", "student_cnn", "teacher_cnn"]


class DigitCNN(nn.Module):
    """A two-block CNN for single-channel digits that returns logits ``[B, num_classes]``.

    Layout (module paths usable as taps):

    - ``features.0`` conv 3x3 ``in_channels -> width``, ``features.1`` BN, ``features.2`` ReLU,
      ``features.3`` max-pool 2x2;
    - ``features.4`` conv 3x3 ``width -> 2*width``, ``features.5`` BN, ``features.6`` ReLU,
      ``features.7`` max-pool 2x2;
    - ``pool`` adaptive average pool to 3x3, ``dropout`` (identity when ``dropout == 0``), ``fc``.

    The convolutions have no bias: the BatchNorm after each one has its own shift.

    ``input_size`` is the side of the images the model is meant for; it is kept as an attribute
    (for example inputs, FLOP counts and exports) and must be >= 4, which the two pools need.
    Inputs of other sizes >= 4 work too.
    """

    POOL = 3

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.0,
                 input_size: int = 28) -> None:
        super().__init__()
        for name, value, minimum in (("width", width, 1), ("num_classes", num_classes, 2),
                                     ("in_channels", in_channels, 1), ("input_size", input_size, 4)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, f"an integer >= {minimum}", value)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError("dropout", "a probability in [0, 1)", dropout)
        self.width = width
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        #: channels of the last feature map (``features.7``)
        self.num_features = 2 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(self.POOL)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(2 * width * self.POOL * self.POOL, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for images ``x`` of shape ``[B, in_channels, H, W]`` (H, W >= 4)."""
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(x))

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch ``[batch_size, in_channels, input_size, input_size]`` on the model's device."""
        device = self.fc.weight.device
        return torch.zeros(batch_size, self.in_channels, self.input_size, self.input_size, device=device)


def teacher_cnn(num_classes: int = 10) -> DigitCNN:
    """The teacher: width 48 with dropout 0.3 (50,842 parameters for 10 classes)."""
    return DigitCNN(width=48, num_classes=num_classes, dropout=0.3)


def student_cnn(num_classes: int = 10) -> DigitCNN:
    """The student: width 8, no dropout (2,722 parameters for 10 classes, about 1/19 of the teacher)."""
    return DigitCNN(width=8, num_classes=num_classes)


#: Model builders by name, as ``build_model`` and recipes accept them.
MODELS: dict[str, Callable[[int], nn.Module]] = {"teacher-cnn": teacher_cnn, "student-cnn": student_cnn}


def build_model(name: str, num_classes: int = 10, in_channels: int | None = None) -> nn.Module:
    """Build any registered model by name; the same as :func:`kd_vision.models.registry.build_model`."""
    from kd_vision.models.registry import build_model as build  # the registry imports this module

    return build(name, num_classes, in_channels)
