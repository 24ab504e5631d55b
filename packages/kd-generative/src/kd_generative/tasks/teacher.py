"""The task's teacher: a full-width Pix2Pix U-Net trained here with L1 + conditional GAN (λ_L1 = 100), once.

Training runs through ``Distiller`` with a PatchGAN held by ``kd_core.gan.DiscriminatorSignal``. The trained
weights are cached by ``kd_core.datacache.cached_model`` under ``$KD_DATA_HOME/teachers/pix2pix-teacher-<digest>``.
The digest covers what determines them: the data's key, the architecture, the training and the discriminator's
settings. The training run itself (metrics, checkpoints, report) is kept in
``$KD_DATA_HOME/teachers/runs/pix2pix-teacher-<digest>/``. A run killed there is resumed by the next build.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from kd_core.backends import Backend
from kd_core.datacache import cached_model, data_home, digest
from kd_core.engine import Distiller, Phase
from kd_core.objective import Objective
from kd_core.task import Evaluator, Splits
from pydantic import Field
from torch import nn

from kd_generative.methods.pix2pix import (
    LAMBDA_L1,
    adam,
    adversarial_term,
    discriminator_signal,
    pix2pix_lr,
    reconstruction_term,
)
from kd_generative.tasks.config import GanConfig, GeneratorConfig

__all__ = ["PREFIX", "TeacherConfig", "train_pix2pix_teacher"]

PREFIX = "pix2pix-teacher"


class TeacherConfig(GeneratorConfig):
    """The teacher U-Net (``GeneratorConfig``) and its Pix2Pix training: ``epochs``, Adam ``lr`` (β1 0.5),
    ``batch_size``, ``lambda_l1``. ``weights`` (a ``.safetensors`` file of this architecture) gives a teacher that
    is used as it is instead."""

    epochs: Annotated[int, Field(ge=1)] = 30
    lr: Annotated[float, Field(gt=0)] = 2e-4
    batch_size: Annotated[int, Field(ge=1)] = 16
    lambda_l1: Annotated[float, Field(ge=0)] = LAMBDA_L1
    weights: str | None = None


def train_pix2pix_teacher(build: Callable[[], nn.Module], splits: Splits, config: TeacherConfig, gan: GanConfig,
                          in_channels: int, data_key: dict[str, Any], device: str, validator: Evaluator,
                          reuse: bool = True) -> tuple[nn.Module, str]:
    """The teacher ``build()`` makes, trained with ``config.lambda_l1``·L1 + cGAN on ``splits.teacher_pool`` (or
    read from the cache unless ``reuse`` is False); returns it in eval mode and a note saying where it came from."""
    determinants = {"data": data_key, "teacher": config.model_dump(exclude={"weights"}), "gan": gan.model_dump(),
                    "format": 1}

    def train(model: nn.Module) -> nn.Module:
        out = data_home() / "teachers" / "runs" / f"{PREFIX}-{digest(**determinants)}"
        signal = discriminator_signal(gan, in_channels, teacher=None)
        objective = Objective(reconstruction_term(config.lambda_l1, "l1"), adversarial_term(signal, 1.0))
        phase = Phase("pix2pix", objective, epochs=config.epochs, optimizer=adam(config.lr), scheduler=pix2pix_lr)
        distiller = Distiller(model, [phase], teacher=signal, backend=Backend(device=device),
                              batch_size=config.batch_size, seed=0, evaluator=validator, monitor="val/psnr")
        distiller.fit(splits.teacher_pool, splits.val, out=out, config={"role": "pix2pix teacher", **determinants},
                      resume=(out / "config.yaml").is_file())
        return distiller.student.cpu()

    def seeded() -> nn.Module:
        torch.manual_seed(0)
        return build()

    model, note = cached_model(seeded, train, PREFIX, reuse, **determinants)
    return model.eval(), note
