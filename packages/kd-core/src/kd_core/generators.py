"""A class-conditional image generator as a protocol, and the check every generated batch must pass.

Generative replay for class-incremental learning (Jodelet, Liu, Phua and Murata, "Class-Incremental
Learning using Diffusion Model for Distillation and Replay", arXiv:2306.17560) feeds images of old
classes, drawn from a frozen pretrained generator, to the distillation and classification losses. The
generator is a domain-neutral piece: kd-vision consumes it (and ships an offline stand-in, the only
implementation so far; a diffusers pipeline in kd-generative is planned), and no domain imports another.
This module is the contract between producer and consumer::

    class MyGenerator:
        image_shape = (1, 28, 28)
        num_classes = 10

        def generate(self, classes, per_class, seed):
            ...
            return {"input": images, "label": labels}   # [N, C, H, W] float, [N] long

    batch = generate_checked(MyGenerator(), classes=[0, 1], per_class=8, seed=0, expected_shape=(1, 28, 28))

A consumer calls ``check_generator`` once before training and ``check_generated`` on every batch, so a
generator of the wrong resolution, or one that returns classes it was not asked for, is refused with a
``ConfigError`` before any weight changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from kd_core.errors import ConfigError

__all__ = ["ImageGenerator", "check_classes", "check_generated", "check_generator", "generate_checked"]


@runtime_checkable
class ImageGenerator(Protocol):
    """A frozen class-conditional image generator.

    ``image_shape`` is ``(C, H, W)`` of every image it makes; ``num_classes`` bounds the class ids it
    knows (``0 .. num_classes - 1``). ``generate`` returns ``{"input": [N, C, H, W] float tensor,
    "label": [N] long tensor}`` with exactly ``per_class`` images of each requested class, in any order,
    and is deterministic for a given ``seed``.
    """

    image_shape: tuple[int, ...]
    num_classes: int

    def generate(self, classes: Sequence[int], per_class: int, seed: int) -> dict[str, torch.Tensor]:
        """``per_class`` images of each class in ``classes``, drawn with ``seed``."""


def check_classes(classes: Sequence[int], num_classes: int | None = None, argument: str = "classes") -> list[int]:
    """``classes`` as a list of distinct non-negative ints (below ``num_classes`` when given)."""
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ConfigError(argument, "a non-empty sequence of class ids", classes)
    values = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ConfigError(argument, "non-negative integer class ids", list(classes))
        values.append(int(c))
    if len(set(values)) != len(values):
        raise ConfigError(argument, "distinct class ids", values)
    if num_classes is not None and max(values) >= num_classes:
        raise ConfigError(argument, f"class ids below the generator's num_classes ({num_classes})", values)
    return values


def _check_per_class(per_class: int) -> int:
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError("per_class", "an integer >= 1", per_class)
    return per_class


def check_generator(generator: Any, expected_shape: Sequence[int], classes: Sequence[int] | None = None) -> None:
    """Refuse ``generator`` unless it implements ``ImageGenerator`` with ``expected_shape`` images
    and knows every class in ``classes``."""
    if not isinstance(generator, ImageGenerator):
        raise ConfigError("generator", "an ImageGenerator (image_shape, num_classes, generate(classes, "
                                       "per_class, seed))", type(generator).__name__)
    expected = tuple(int(s) for s in expected_shape)
    shape = tuple(generator.image_shape) if isinstance(generator.image_shape, Sequence) else generator.image_shape
    if shape != expected:
        raise ConfigError("generator", f"image_shape {expected} like the data's", shape)
    if classes is not None:
        check_classes(classes, generator.num_classes, argument="generator.classes")


def check_generated(batch: Any, expected_shape: Sequence[int], classes: Sequence[int],
                    per_class: int) -> dict[str, torch.Tensor]:
    """Return ``batch`` if it holds exactly ``per_class`` images of each class in ``classes``, shaped
    ``[N, *expected_shape]`` with finite float values and ``[N]`` long labels; otherwise raise
    ``ConfigError("generator", ...)`` naming what was expected and what came."""
    wanted = check_classes(classes)
    per_class = _check_per_class(per_class)
    expected = tuple(int(s) for s in expected_shape)
    n = len(wanted) * per_class
    if not isinstance(batch, Mapping) or "input" not in batch or "label" not in batch:
        received = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ConfigError("generator", "a dict with 'input' and 'label' tensors", received)
    images, labels = batch["input"], batch["label"]
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ConfigError("generator", "'input' and 'label' as torch tensors",
                          f"{type(images).__name__} and {type(labels).__name__}")
    if tuple(images.shape) != (n, *expected):
        raise ConfigError("generator", f"images of shape {(n, *expected)} ({len(wanted)} classes x {per_class})",
                          tuple(images.shape))
    if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
        raise ConfigError("generator", "finite floating-point images", f"{images.dtype} with non-finite values"
                          if images.is_floating_point() else str(images.dtype))
    if labels.dtype != torch.long or tuple(labels.shape) != (n,):
        raise ConfigError("generator", f"labels of dtype torch.int64 and shape {(n,)}",
                          f"{labels.dtype} of shape {tuple(labels.shape)}")
    present = sorted(set(labels.tolist()))
    unexpected = [c for c in present if c not in set(wanted)]
    if unexpected:
        raise ConfigError("generator", f"labels among the requested classes {wanted}",
                          f"labels {unexpected}", hint="a generator must not return classes it was not asked for")
    counts = torch.bincount(labels, minlength=max(wanted) + 1)
    wrong = {c: int(counts[c]) for c in wanted if int(counts[c]) != per_class}
    if wrong:
        raise ConfigError("generator", f"{per_class} images of each requested class", f"counts {wrong}")
    return {"input": images, "label": labels}


def generate_checked(generator: ImageGenerator, classes: Sequence[int], per_class: int, seed: int,
                     expected_shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """Call ``generator.generate`` and return its batch after ``check_generator`` and ``check_generated``."""
    check_generator(generator, expected_shape, classes)
    batch = generator.generate(list(classes), _check_per_class(per_class), seed)
    return check_generated(batch, expected_shape, classes, per_class)
