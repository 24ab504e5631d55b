"""What a U-Net's removed inner branch contributed, measured on calibration inputs and folded into a constant.

When the innermost levels of a U-Net are cut (``kd_edge.prune.unet_cut``), the decoder ``D`` of the new
innermost level loses the deeper half of its input ``cat([s, h])``: ``h`` is the output of the removed
branch (the removed decoder's last layer, e.g. a BatchNorm, so ``h`` takes both signs). ``D`` starts
with per-channel layers (ReLU, in Pix2Pix) and then its first convolution ``W``, which is linear, so
its output splits exactly into ``W_s ⊛ a(s) + W_h ⊛ a(h) + b``, with ``a`` the leading per-channel
layers and ``W_s``, ``W_h`` the weight slices of the two input parts. The cut drops ``W_h`` and keeps
``W_s`` unchanged; the fold replaces the dropped term ``W_h ⊛ a(h)`` by its mean per output channel
over the calibration batch and every output position:

    c_o = mean_{n, x} (W_h ⊛ a(h))_{n, o, x} = mean_x (W_h ⊛ E_n[a(h)])_{o, x}

(the second form by linearity: one convolution of the per-position batch mean of ``a(h)``, so strided
ConvTranspose border positions, which fewer kernel taps reach, are counted exactly). ``a(h)`` is what
the convolution actually receives, captured at its input: for Pix2Pix ``E[ReLU(h)]``, never ``E[h]``
(that would be the mean the ReLU has not yet clipped) nor ``ReLU(E[h])``. ``c`` is added to the
convolution's bias, or, for a convolution without bias followed by a BatchNorm, subtracted from that
norm's running mean (the same thing in eval mode; in train mode a BatchNorm removes any per-channel
constant anyway). The per-channel mean of the convolution's output on the calibration inputs (and,
BatchNorm in eval mode being affine per channel, of the norm's output) is then exactly what it was
before the cut; what is lost is the branch's variation over samples and positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.structure import UNetStructure
from torch import nn

from kd_edge.prune.common import ExampleInputs, call

__all__ = ["BranchMean", "consumer_conv", "fold_constant", "measure_branch", "slice_inputs"]

_CONV: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d,
    nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d,
    nn.ConvTranspose3d: F.conv_transpose3d,
}


@dataclass
class BranchMean:
    """The decoder convolution that read the removed branch, its input split, and the fold constant."""

    consumer: str
    keep: slice
    drop: slice
    mean: torch.Tensor


def consumer_conv(model: nn.Module, decoder: str) -> tuple[str, nn.Module]:
    """The first convolution (in module order) inside the decoder at path ``decoder``: the layer that
    reads the level's concatenated input."""
    for name, module in model.get_submodule(decoder).named_modules():
        if type(module) in _CONV:
            if module.groups != 1 or module.padding_mode != "zeros":
                raise ConfigError("model", "a decoder convolution with groups=1 and zero padding",
                                  f"{decoder}.{name}: groups={module.groups}, padding_mode={module.padding_mode}")
            return f"{decoder}.{name}" if name else decoder, module
    raise ConfigError("model", f"a convolution inside the decoder '{decoder}'", None)


def _input_dim(conv: nn.Module) -> int:
    """The weight axis of the input channels: 0 for a transposed convolution, 1 otherwise."""
    return 0 if conv.transposed else 1


def _contribution(conv: nn.Module, inputs: torch.Tensor, drop: slice) -> torch.Tensor:
    """``W_drop ⊛ inputs`` without bias: the part of the convolution's output those input channels make."""
    weight = conv.weight.narrow(_input_dim(conv), drop.start, drop.stop - drop.start)
    if conv.transposed:
        return _CONV[type(conv)](inputs, weight, None, conv.stride, conv.padding, conv.output_padding, 1,
                                 conv.dilation)
    return _CONV[type(conv)](inputs, weight, None, conv.stride, conv.padding, conv.dilation, 1)


@torch.no_grad()
def measure_branch(model: nn.Module, structure: UNetStructure, new_depth: int, example_inputs: ExampleInputs
                   ) -> BranchMean:
    """Run ``model`` (eval mode, restored afterwards) on ``example_inputs`` and measure, for the decoder of
    level ``new_depth - 1``, the per-output-channel mean of the part its first convolution computes from
    the deeper levels' output (the module doc's ``c``)."""
    level = structure.levels[new_depth - 1]
    consumer, conv = consumer_conv(model, level.decoder)
    seen: dict[str, torch.Tensor] = {}

    def skip_hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
        seen["skip"] = output if isinstance(output, torch.Tensor) else output[0]

    def conv_hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.setdefault("input", args[0].detach().mean(dim=0, keepdim=True))

    flags = [(m, m.training) for m in model.modules()]
    handles = [model.get_submodule(level.encoder).register_forward_hook(skip_hook),
               conv.register_forward_pre_hook(conv_hook)]
    try:
        model.eval()
        call(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag
    if "skip" not in seen or "input" not in seen:
        raise ConfigError("model", f"a forward pass through '{level.encoder}' and '{consumer}'", sorted(seen))
    total = seen["input"].shape[1]
    keep, drop = structure.split(seen["skip"].shape[1], total)
    branch = seen["input"][:, drop]
    mean = _contribution(conv, branch, drop)
    return BranchMean(consumer, keep, drop, mean.flatten(2).mean(dim=(0, 2)))


def slice_inputs(conv: nn.Module, keep: slice) -> None:
    """Keep only the input channels ``keep`` of ``conv`` (weight and ``in_channels``), in place."""
    weight = conv.weight.detach().narrow(_input_dim(conv), keep.start, keep.stop - keep.start).clone()
    conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    conv.in_channels = keep.stop - keep.start


@torch.no_grad()
def fold_constant(model: nn.Module, decoder: str, consumer: str, mean: torch.Tensor) -> str:
    """Add ``mean`` (one value per output channel) to the output of ``consumer`` for good: into its bias,
    else into the running mean of the BatchNorm right after it in ``decoder``. Returns where it went."""
    conv = model.get_submodule(consumer)
    if conv.bias is not None:
        conv.bias.add_(mean.to(conv.bias.dtype))
        return "bias"
    order = [module for _, module in model.get_submodule(decoder).named_modules() if not list(module.children())]
    after = order[order.index(conv) + 1] if conv in order and order.index(conv) + 1 < len(order) else None
    if isinstance(after, nn.modules.batchnorm._BatchNorm) and after.running_mean is not None:
        after.running_mean.sub_(mean.to(after.running_mean.dtype))
        return "running_mean"
    raise ConfigError("model", f"a bias on '{consumer}', or a BatchNorm with running statistics right after it, "
                      "to fold the removed branch's mean into", type(after).__name__ if after else None)
