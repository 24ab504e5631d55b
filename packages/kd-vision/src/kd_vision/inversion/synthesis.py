"""The synthesis driver shared by DeepInversion and NaturalInversion: class-balanced batches, a frozen
eval-mode teacher on its own device, a seeded RNG, and a rich progress bar over iterations.

An inverter implements ``synthesize_batch(teacher, labels, image_shape, num_classes, step)``, returning
the batch's best images (recomputed without jitter) and their loss; ``step(loss)`` is called once per
iteration. ``synthesize`` splits ``images_per_class × num_classes`` labels into batches, runs the
inverter on each, and returns a ``SyntheticImages`` set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from kd_core.errors import ConfigError
from kd_core.progress import progress_bar
from torch import nn

from kd_vision.inversion.dataset import SyntheticImages
from kd_vision.inversion.priors import require_batchnorm

__all__ = ["BatchResult", "Inverter", "balanced_labels", "frozen_teacher", "synthesize"]

Step = Callable[[float], None]


@dataclass
class BatchResult:
    """One synthesised batch: its lowest-loss images (un-jittered) and that loss."""

    images: torch.Tensor
    loss: float


class Inverter(Protocol):
    """A model-inversion method: how one batch of images is optimised against the teacher."""

    name: str
    iterations: int

    def synthesize_batch(self, teacher: nn.Module, labels: torch.Tensor, image_shape: tuple[int, int, int],
                         num_classes: int, step: Step) -> BatchResult:
        """Optimise one batch for ``labels`` (on the teacher's device)."""

    def settings(self) -> dict[str, Any]:
        """The settings, for provenance and reports."""


@contextlib.contextmanager
def frozen_teacher(teacher: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; every module's mode and flag restored afterwards.

    In eval mode BatchNorm normalises with (and never updates) its running statistics.
    """
    modes = [(module, module.training) for module in teacher.modules()]
    flags = [(p, p.requires_grad) for p in teacher.parameters()]
    teacher.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield teacher
    finally:
        for module, mode in modes:
            module.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def balanced_labels(images_per_class: int, num_classes: int) -> torch.Tensor:
    """``[0, 1, …, K−1, 0, 1, …]``: every consecutive batch is as class-balanced as it can be."""
    return torch.arange(images_per_class * num_classes) % num_classes


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return value


def _device_of(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def synthesize(inverter: Inverter, teacher: nn.Module, *, num_classes: int, image_shape: tuple[int, int, int],
               images_per_class: int, batch_size: int, seed: int = 0, progress: Any = None,
               label: str = "synthesis") -> SyntheticImages:
    """``images_per_class × num_classes`` images inverted from ``teacher`` on its device, in batches.

    The teacher is checked for BatchNorm layers first (``ConfigError`` otherwise), is in eval mode with
    frozen parameters throughout, and is left as it came. The global RNG is forked and seeded with
    ``seed``, so runs repeat without disturbing the caller's RNG. ``progress`` is a rich progress bar
    (one is opened when None).
    """
    require_batchnorm(teacher)
    _check_int("num_classes", num_classes, 2)
    _check_int("images_per_class", images_per_class, 1)
    _check_int("batch_size", batch_size, 2)  # batch statistics need at least 2 images
    if len(image_shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_shape):
        raise ConfigError("image_shape", "(channels, height, width) of positive integers", image_shape)
    labels = balanced_labels(images_per_class, num_classes)
    batches = [labels[i: i + batch_size] for i in range(0, len(labels), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a last batch of one image has no batch statistics
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    device = _device_of(teacher)
    owned = progress is None
    bar = progress_bar() if owned else progress
    images, losses = [], []
    fork_devices = [device] if device.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        if owned:
            stack.enter_context(bar)
        stack.enter_context(torch.random.fork_rng(devices=fork_devices))
        stack.enter_context(frozen_teacher(teacher))
        torch.manual_seed(seed)
        task = bar.add_task(f"{label} ({inverter.name})", total=len(batches) * inverter.iterations, info="")

        def step(loss: float) -> None:
            bar.update(task, advance=1, info=f"loss {loss:.3f}")

        for index, batch_labels in enumerate(batches):
            result = inverter.synthesize_batch(teacher, batch_labels.to(device), tuple(image_shape), num_classes,
                                               step)
            images.append(result.images.detach().cpu())
            losses.append(result.loss)
            bar.update(task, info=f"batch {index + 1}/{len(batches)} best loss {result.loss:.3f}")
    provenance = {"method": inverter.name, "settings": inverter.settings(), "seed": seed,
                  "images_per_class": images_per_class, "batch_size": batch_size, "batch_losses": losses,
                  "image_shape": list(image_shape), "num_classes": num_classes}
    return SyntheticImages(torch.cat(images), labels, provenance)
