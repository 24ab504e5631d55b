"""Scoring an image-to-image generator: PSNR, SSIM, perceptual and Fréchet distances against the targets and
against the teacher's images, and a cheap per-epoch validator (PSNR and L1 to the targets)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from kd_core.signals import Forward, default_forward
from kd_core.task import Evaluator
from torch import nn

from kd_generative.metrics import FeatureNetwork, image_quality, psnr

__all__ = ["generated_images", "translation_evaluator", "translation_validator"]


def generated_images(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward = default_forward,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s images (eval mode, clamped to [-1, 1]) and the targets of ``batches``, on the CPU."""
    was_training = model.training
    model.eval()
    images, targets = [], []
    try:
        with torch.no_grad():
            for batch in batches:
                images.append(forward(model, batch).float().clamp(-1.0, 1.0).cpu())
                targets.append(batch["target"].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(images), torch.cat(targets)


def translation_validator(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                          forward: Forward = default_forward) -> dict[str, float]:
    """``psnr`` (dB) and ``l1`` of ``model``'s images to the targets: what is logged after every epoch."""
    images, targets = generated_images(model, batches, forward)
    return {"psnr": float(psnr(images, targets)), "l1": float((images - targets).abs().mean())}


def translation_evaluator(teacher: Callable[[], nn.Module], feature_net: Callable[[], FeatureNetwork]) -> Evaluator:
    """An evaluator returning ``psnr``, ``ssim``, ``perceptual``, ``frechet`` and ``l1`` against the targets and
    the same with a ``_teacher`` suffix against ``teacher()``'s images (left out when scoring the teacher itself).

    The test batches are kept on the CPU for the metrics; the feature network is the toolkit's own (its
    distances compare only within this toolkit)."""

    def evaluate(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                 forward: Forward = default_forward) -> dict[str, float]:
        batches = list(batches)
        images, targets = generated_images(model, batches, forward)
        net = feature_net()
        scores = {**image_quality(images, targets, net), "l1": float((images - targets).abs().mean())}
        reference = teacher()
        if reference is not model:
            device = next(model.parameters()).device
            teacher_images, _ = generated_images(reference.to(device), batches, forward)
            to_teacher = image_quality(images, teacher_images, net)
            scores.update({f"{k}_teacher": v for k, v in to_teacher.items()})
            scores["l1_teacher"] = float((images - teacher_images).abs().mean())
        return scores

    return evaluate
