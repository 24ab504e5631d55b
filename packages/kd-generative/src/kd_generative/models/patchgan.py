"""The PatchGAN discriminator of Pix2Pix (Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with
Conditional Adversarial Networks", CVPR 2017, §3.2.2 and appendix 6.1.2).

It scores every overlapping patch of an image pair as real or fake: the conditioning image and the
(real or generated) output are concatenated on the channel axis, then ``n_layers`` strided 4×4
convolutions (LeakyReLU 0.2; BatchNorm on all but the first), one 4×4 convolution of stride 1 and a final
4×4 convolution to one channel give a map of logits, one per patch. Widths are
``base · min(2^i, max_mult)``. With ``n_layers=3`` (the paper's default, C64-C128-C256-C512) each logit
sees a 70×70 patch of the input: ``receptive_field(3) == 70``.
"""

from __future__ import annotations

from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["PatchDiscriminator", "build_patchgan", "layer_geometry", "min_input_size", "output_size", "receptive_field"]


def _positive_int(value: Any, argument: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(argument, f"an integer >= {low}", value)
    return value


def layer_geometry(n_layers: int) -> list[tuple[int, int, int]]:
    """``(kernel, stride, padding)`` of every convolution of a PatchGAN with ``n_layers``, input first."""
    _positive_int(n_layers, "n_layers")
    return [(4, 2, 1)] * n_layers + [(4, 1, 1), (4, 1, 1)]


def receptive_field(n_layers: int = 3) -> int:
    """The side of the input patch that one output logit sees (70 for the default ``n_layers=3``)."""
    field = 1
    for kernel, stride, _ in reversed(layer_geometry(n_layers)):
        field = (field - 1) * stride + kernel
    return field


def output_size(size: int, n_layers: int = 3) -> int:
    """The side of the logit map for an input of side ``size`` (below 1: the input is too small)."""
    _positive_int(size, "size")
    for kernel, stride, padding in layer_geometry(n_layers):
        size = (size + 2 * padding - kernel) // stride + 1
    return size


def min_input_size(n_layers: int = 3) -> int:
    """The smallest input side that still gives a 1×1 logit map (24 for ``n_layers=3``)."""
    size = 1
    for kernel, stride, padding in reversed(layer_geometry(n_layers)):
        size = (size - 1) * stride + kernel - 2 * padding
    return size


class PatchDiscriminator(nn.Module):
    """``forward(condition, image)`` → ``[N, 1, H', W']`` logits, one per patch; see the module doc."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 64, n_layers: int = 3,
                 max_mult: int = 8) -> None:
        super().__init__()
        for argument, value in (("in_channels", in_channels), ("out_channels", out_channels), ("base", base),
                                ("n_layers", n_layers), ("max_mult", max_mult)):
            _positive_int(value, argument)
        self.in_channels, self.out_channels, self.n_layers = in_channels, out_channels, n_layers
        widths = [base * min(2**i, max_mult) for i in range(n_layers + 1)]
        geometry = layer_geometry(n_layers)
        layers: list[nn.Module] = []
        previous = in_channels + out_channels
        for i, (kernel, stride, padding) in enumerate(geometry[:-1]):
            layers.append(nn.Conv2d(previous, widths[i], kernel, stride, padding))
            if i > 0:
                layers.append(nn.BatchNorm2d(widths[i]))
            layers.append(nn.LeakyReLU(0.2))
            previous = widths[i]
        kernel, stride, padding = geometry[-1]
        layers.append(nn.Conv2d(previous, 1, kernel, stride, padding))
        self.net = nn.Sequential(*layers)

    def receptive_field(self) -> int:
        """The side of the input patch that one logit sees, from this model's own convolutions."""
        field = 1
        for conv in reversed([m for m in self.net if isinstance(m, nn.Conv2d)]):
            field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
        return field

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Logits for the pair (``condition``: the generator's input, ``image``: a real or generated output)."""
        for argument, tensor, channels in (("condition", condition, self.in_channels),
                                           ("image", image, self.out_channels)):
            if tensor.dim() != 4 or tensor.shape[1] != channels:
                raise ConfigError(argument, f"a [N, {channels}, H, W] image batch", tuple(tensor.shape))
        if condition.shape[0] != image.shape[0] or condition.shape[-2:] != image.shape[-2:]:
            raise ConfigError("image", f"the condition's batch and size {tuple(condition.shape[:1])} "
                              f"{tuple(condition.shape[-2:])}", tuple(image.shape))
        if min(image.shape[-2:]) < min_input_size(self.n_layers):
            raise ConfigError("image", f"H and W of at least {min_input_size(self.n_layers)} for "
                              f"n_layers={self.n_layers}", tuple(image.shape[-2:]))
        return self.net(torch.cat([condition, image], dim=1))


def build_patchgan(in_channels: int = 3, out_channels: int = 3, base: int = 64, n_layers: int = 3,
                   max_mult: int = 8) -> PatchDiscriminator:
    """A Pix2Pix PatchGAN discriminator (defaults: the paper's 70×70 one for RGB → RGB)."""
    return PatchDiscriminator(in_channels, out_channels, base, n_layers, max_mult)
