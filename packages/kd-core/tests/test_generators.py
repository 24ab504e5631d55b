"""The ImageGenerator protocol and the checks that refuse a wrong generated batch before training."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from kd_core.errors import ConfigError, KDError
from kd_core.generators import ImageGenerator, check_classes, check_generated, check_generator, generate_checked

SHAPE = (1, 8, 8)


class ToyGenerator:
    """Per-class constant images (value = class id) plus seeded noise; ``mistake`` breaks one thing."""

    def __init__(self, image_shape: tuple[int, ...] = SHAPE, num_classes: int = 10, mistake: str = "") -> None:
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.mistake = mistake

    def generate(self, classes: Sequence[int], per_class: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        labels = torch.tensor(list(classes)).repeat_interleave(per_class)
        images = labels.float().view(-1, 1, 1, 1) + 0.1 * torch.randn(len(labels), *self.image_shape, generator=g)
        if self.mistake == "shape":
            images = images[..., :4]
        elif self.mistake == "unseen":
            labels = labels.clone()
            labels[0] = 9  # a class nobody asked for
        elif self.mistake == "count":
            images, labels = images[1:], labels[1:]
        elif self.mistake == "dtype":
            labels = labels.int()
        elif self.mistake == "nan":
            images[0, 0, 0, 0] = float("nan")
        elif self.mistake == "tuple":
            return (images, labels)  # type: ignore[return-value]
        return {"input": images, "label": labels}


def test_a_conforming_generator_implements_the_protocol_and_passes() -> None:
    generator = ToyGenerator()
    assert isinstance(generator, ImageGenerator)
    batch = generate_checked(generator, classes=[2, 5], per_class=3, seed=0, expected_shape=SHAPE)
    assert batch["input"].shape == (6, *SHAPE)
    assert batch["label"].tolist() == [2, 2, 2, 5, 5, 5]
    again = generate_checked(generator, classes=[2, 5], per_class=3, seed=0, expected_shape=SHAPE)
    assert torch.equal(batch["input"], again["input"])  # the toy is seeded: the check does not alter it


def test_an_object_without_generate_is_not_a_generator() -> None:
    class NoGenerate:
        image_shape = SHAPE
        num_classes = 10

    assert not isinstance(NoGenerate(), ImageGenerator)
    with pytest.raises(ConfigError, match="an ImageGenerator"):
        check_generator(NoGenerate(), SHAPE)


def test_a_wrong_image_shape_names_expected_and_received_shapes() -> None:
    with pytest.raises(ConfigError) as caught:
        generate_checked(ToyGenerator(mistake="shape"), classes=[0, 1], per_class=2, seed=0, expected_shape=SHAPE)
    message = str(caught.value)
    assert caught.value.argument == "generator"
    assert "(4, 1, 8, 8)" in message and "(4, 1, 8, 4)" in message


def test_a_generator_declaring_another_resolution_is_refused_before_generating() -> None:
    with pytest.raises(ConfigError, match=r"image_shape \(1, 28, 28\)"):
        check_generator(ToyGenerator(), (1, 28, 28))


@pytest.mark.parametrize(("mistake", "needle"), [
    ("unseen", "labels [9]"),
    ("count", "images of shape (6, 1, 8, 8)"),
    ("dtype", "torch.int64"),
    ("nan", "finite"),
    ("tuple", "a dict with 'input' and 'label'"),
])
def test_each_kind_of_wrong_batch_is_refused_with_a_kd_error(mistake: str, needle: str) -> None:
    with pytest.raises(KDError) as caught:
        generate_checked(ToyGenerator(mistake=mistake), classes=[0, 1, 2], per_class=2, seed=0,
                         expected_shape=SHAPE)
    assert needle in str(caught.value)


def test_unbalanced_counts_with_the_right_total_are_refused() -> None:
    images = torch.zeros(4, *SHAPE)
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(ConfigError, match=r"2 images of each requested class.*\{0: 3, 1: 1\}"):
        check_generated({"input": images, "label": labels}, SHAPE, classes=[0, 1], per_class=2)


def test_classes_beyond_the_generators_range_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="below the generator's num_classes"):
        generate_checked(ToyGenerator(num_classes=3), classes=[1, 3], per_class=1, seed=0, expected_shape=SHAPE)
    with pytest.raises(ConfigError, match="distinct"):
        check_classes([1, 1])
    with pytest.raises(ConfigError, match="non-empty"):
        check_classes([])
    with pytest.raises(ConfigError, match="per_class"):
        check_generated({"input": torch.zeros(0, *SHAPE), "label": torch.zeros(0, dtype=torch.long)}, SHAPE,
                        classes=[0], per_class=0)
