"""One registry for every kd-vision architecture: ``build_model(name, num_classes, in_channels)``.

Names:

- the digit CNNs of :mod:`kd_vision.models.cnn`: ``teacher-cnn``, ``student-cnn`` (1 input channel by
  default);
- the CIFAR-style models of :mod:`kd_vision.models.cifar`: ``resnet8x4``, ``resnet32x4``, ``resnet20``,
  ``resnet56``, ``wrn_16_2``, ``wrn_40_2``, ``vgg8``, ``vgg13`` (3 input channels by default);
- any torchvision classification model as ``tv:<name>`` (``tv:resnet18``, ``tv:mobilenet_v3_small``),
  built by ``torchvision.models.get_model(name, weights=None, num_classes=...)`` and left unmodified, so
  its own module paths (``layer4``, ``features.12``, ``in:fc``) are the taps. ``weights=None`` means
  nothing is downloaded; torchvision models take 3 channels only.

An unknown name raises :class:`~kd_core.errors.ConfigError` that lists the nearest known names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from kd_core.errors import ConfigError
from torch import nn

from kd_vision.models.cifar import CIFAR_MODELS
from kd_vision.models.cnn import DigitCNN, student_cnn, teacher_cnn

__all__ = ["MODELS", "TORCHVISION_PREFIX", "available_models", "build_model", "torchvision_models"]

#: The prefix that selects a torchvision classification model.
TORCHVISION_PREFIX = "tv:"

#: A model builder: ``builder(num_classes, in_channels or None) -> nn.Module``.
Builder = Callable[[int, int | None], nn.Module]


def _digit(factory: Callable[[int], DigitCNN]) -> Builder:
    """A builder that keeps ``factory``'s width and dropout and honours ``in_channels``."""

    def build(num_classes: int, in_channels: int | None) -> nn.Module:
        model = factory(num_classes)
        if in_channels is None or in_channels == model.in_channels:
            return model
        dropout = model.dropout.p if isinstance(model.dropout, nn.Dropout) else 0.0
        return DigitCNN(width=model.width, num_classes=num_classes, in_channels=in_channels, dropout=dropout,
                        input_size=model.input_size)

    build.__doc__ = factory.__doc__
    return build


def _cifar(factory: Callable[[int, int], nn.Module]) -> Builder:
    """A builder with 3 input channels unless ``in_channels`` says otherwise."""

    def build(num_classes: int, in_channels: int | None) -> nn.Module:
        return factory(num_classes, 3 if in_channels is None else in_channels)

    build.__doc__ = factory.__doc__
    return build


#: Builders by fixed name: ``builder(num_classes, in_channels or None) -> nn.Module``. Torchvision
#: models (``tv:<name>``) are resolved on demand and are not listed here.
MODELS: dict[str, Builder] = {
    "teacher-cnn": _digit(teacher_cnn),
    "student-cnn": _digit(student_cnn),
    **{name: _cifar(factory) for name, factory in CIFAR_MODELS.items()},
}


def torchvision_models() -> list[str]:
    """The torchvision classification model names (without the ``tv:`` prefix), sorted."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def available_models(include_torchvision: bool = True) -> list[str]:
    """Every name :func:`build_model` accepts: the fixed names, then ``tv:<name>`` for torchvision's."""
    names = sorted(MODELS)
    if include_torchvision:
        names += [TORCHVISION_PREFIX + name for name in torchvision_models()]
    return names


def _nearest(name: str, candidates: list[str], n: int = 5, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` candidates most similar to ``name``; a ``tv:`` candidate also matches its bare name."""
    scored = []
    for candidate in candidates:
        bare = candidate.removeprefix(TORCHVISION_PREFIX)
        score = max(difflib.SequenceMatcher(None, name, candidate).ratio(),
                    difflib.SequenceMatcher(None, name, bare).ratio())
        if score >= cutoff:
            scored.append((-score, candidate))
    return [candidate for _, candidate in sorted(scored)[:n]]


def _unknown(name: str) -> ConfigError:
    fixed = ", ".join(repr(n) for n in sorted(MODELS))
    nearest = _nearest(name, available_models())
    hint = (f"nearest known names: {', '.join(repr(n) for n in nearest)}" if nearest
            else "see kd_vision.models.available_models()")
    return ConfigError("name", f"one of {fixed}, or 'tv:<name>' for a torchvision classification model",
                       name, hint=hint)


def _check_int(argument: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(argument, f"an integer >= {minimum}", value)
    return value


def build_model(name: str, num_classes: int = 10, in_channels: int | None = None) -> nn.Module:
    """Build the model called ``name`` with ``num_classes`` outputs, freshly initialised.

    ``in_channels`` defaults to the model's own (1 for the digit CNNs, 3 otherwise); torchvision
    models accept only 3. Raises :class:`ConfigError` for an unknown name (listing the nearest known
    names) or a bad ``num_classes``/``in_channels``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("name", "a model name such as 'resnet20' or 'tv:resnet18'", name)
    _check_int("num_classes", num_classes, 2)
    if in_channels is not None:
        _check_int("in_channels", in_channels, 1)
    if name in MODELS:
        return MODELS[name](num_classes, in_channels)
    if name.startswith(TORCHVISION_PREFIX):
        bare = name.removeprefix(TORCHVISION_PREFIX)
        if bare not in torchvision_models():
            raise _unknown(name)
        if in_channels not in (None, 3):
            raise ConfigError("in_channels", "3 (torchvision models are built unmodified)", in_channels,
                              hint=f"use a kd-vision model for {in_channels}-channel inputs")
        from torchvision import models

        return models.get_model(bare, weights=None, num_classes=num_classes)
    raise _unknown(name)
