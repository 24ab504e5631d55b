"""Image priors of model inversion: BatchNorm feature statistics, total variation and an L2 norm.

Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020,
arXiv:1912.08795, and Kim et al., "NaturalInversion: Data-Free Image Synthesis Improving Real-World
Consistency", AAAI 2022, arXiv:2306.16661, regularise synthetic images with

- the BN-statistics prior Σ_l ‖μ_l(x) − μ_l^BN‖₂ + ‖σ²_l(x) − σ²_l^BN‖₂, where μ_l(x), σ²_l(x) are the
  batch mean and (biased) variance per channel of the *input* of BatchNorm layer l and μ_l^BN, σ²_l^BN
  its running statistics;
- total variation: the sum of the L2 norms of the four directional finite differences (right, down
  and both diagonals) over the whole batch;
- the L2 norm of the whole batch.

The BN statistics are read with forward hooks opened only inside ``BNStatisticsPrior.capture()``;
the model is never modified, and its running statistics are only read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from kd_core.errors import ConfigError
from kd_core.taps import unwrap
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BNStatisticsPrior", "batchnorm_layers", "bn_statistics_distance", "l2_prior", "require_batchnorm",
           "total_variation"]


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """Every BatchNorm layer of ``model`` (unwrapped) that keeps running statistics, with its path."""
    return [(name, module) for name, module in unwrap(model).named_modules()
            if isinstance(module, _BatchNorm) and module.track_running_stats
            and module.running_mean is not None and module.running_var is not None]


def require_batchnorm(model: nn.Module, argument: str = "teacher") -> list[tuple[str, _BatchNorm]]:
    """The BatchNorm layers of ``model``; a ``ConfigError`` if it has none (the BN prior needs them)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(argument, "a torch.nn.Module", type(model).__name__)
    layers = batchnorm_layers(model)
    if not layers:
        raise ConfigError(argument, "a model with BatchNorm layers", f"{type(unwrap(model)).__name__} without any",
                          hint="model inversion matches the batch statistics of synthetic images to the "
                               "running statistics of the teacher's BatchNorm layers")
    return layers


def _channel_statistics(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of a BatchNorm input ``[B, C, ...]`` over every other axis."""
    if inputs.ndim < 2:
        raise ConfigError("inputs", "a BatchNorm input of shape [B, C, ...]", tuple(inputs.shape))
    flat = inputs.transpose(0, 1).reshape(inputs.shape[1], -1)
    return flat.mean(1), flat.var(1, unbiased=False)


def bn_statistics_distance(inputs: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
                           ) -> torch.Tensor:
    """‖μ(inputs) − running_mean‖₂ + ‖σ²(inputs) − running_var‖₂ for one BatchNorm layer's input."""
    mean, var = _channel_statistics(inputs.float())
    return torch.linalg.vector_norm(mean - running_mean.float()) + torch.linalg.vector_norm(var - running_var.float())


class BNStatisticsPrior:
    """The BN-statistics prior of a model: hooks on every BatchNorm layer, open only while capturing.

    >>> prior = BNStatisticsPrior(teacher)
    >>> with prior.capture():
    ...     logits = teacher(x)
    >>> loss = prior.loss()   # Σ_l ‖μ_l − μ_l^BN‖₂ + ‖σ²_l − σ²_l^BN‖₂ of that forward pass

    Only the last forward pass inside ``capture()`` counts. A ``ConfigError`` is raised at
    construction if the model has no BatchNorm layer.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = require_batchnorm(model)
        self._distances: dict[str, torch.Tensor] = {}

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        """Open the hooks; the yielded dict maps each BN layer's path to its distance for the last pass."""
        self._distances = {}
        handles = [module.register_forward_hook(self._hook(name)) for name, module in self.layers]
        try:
            yield self._distances
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, name: str):
        def hook(module: _BatchNorm, args: tuple, output: torch.Tensor) -> None:
            # computed here, from the input as it is now: a later in-place op cannot change it
            self._distances[name] = bn_statistics_distance(args[0], module.running_mean, module.running_var)
        return hook

    def loss(self) -> torch.Tensor:
        """The sum over layers of the last captured pass; an error if no BatchNorm layer ran."""
        missing = [name for name, _ in self.layers if name not in self._distances]
        if len(missing) == len(self.layers):
            raise ConfigError("teacher", "a forward pass through its BatchNorm layers inside capture()",
                              "no BatchNorm layer ran")
        return torch.stack(list(self._distances.values())).sum()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Sum of the L2 norms (over the whole batch) of the 4 directional differences of ``[B, C, H, W]``."""
    if images.ndim != 4:
        raise ConfigError("images", "a batch of shape [B, C, H, W]", tuple(images.shape))
    right = images[:, :, :, :-1] - images[:, :, :, 1:]
    down = images[:, :, :-1, :] - images[:, :, 1:, :]
    anti_diagonal = images[:, :, 1:, :-1] - images[:, :, :-1, 1:]
    diagonal = images[:, :, :-1, :-1] - images[:, :, 1:, 1:]
    return sum((torch.linalg.vector_norm(d) for d in (right, down, anti_diagonal, diagonal)),
               start=images.new_zeros(()))


def l2_prior(images: torch.Tensor) -> torch.Tensor:
    """The L2 norm of the whole batch, ‖x‖₂."""
    return torch.linalg.vector_norm(images)
