"""The talking-face task's teacher and experts, trained here once and cached under ``$KD_DATA_HOME/teachers``.

- Experts: :func:`kd_generative.talking.expert.trained_expert` on the train split's in-sync / off-sync pairs
  (``sync-expert-<digest>``), one for the sync loss and, by default, a second (another seed) for scoring.
- Teacher: the full-size generator trained with Wav2Lip's reconstruction and expert sync losses,
  ``L1(G(x), y) + λ_sync · L_sync`` (no discriminator), Adam (β1 0.5), the learning rate held for half of
  training and then decayed linearly to zero, through ``Distiller``; cached by ``kd_core.datacache.cached_model``
  as ``wav2lip-teacher-<digest>`` (the digest covers the data, the architecture, the training and the expert);
  its run (metrics, checkpoints) is kept in ``$KD_DATA_HOME/teachers/runs/`` and resumed if it was killed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from kd_core.backends import Backend
from kd_core.datacache import cached_model, data_home, digest
from kd_core.engine import Distiller, Phase
from kd_core.objective import Objective
from kd_core.task import Evaluator, Splits
from torch import nn

from kd_generative.methods.pix2pix import adam, pix2pix_lr, reconstruction_term
from kd_generative.methods.wav2lip_losses import sync_term
from kd_generative.talking.dataset import TalkingWindows
from kd_generative.talking.expert import SyncExpert, SyncPairs, expert_accuracy, trained_expert
from kd_generative.tasks.talking_config import ExpertConfig, TalkingTeacher
from kd_generative.tasks.talking_data import talking_forward

__all__ = ["PREFIX", "expert_accuracies", "expert_pair", "train_talking_teacher"]

PREFIX = "wav2lip-teacher"


def expert_pair(train: TalkingWindows, config: ExpertConfig, reuse: bool = True
                ) -> tuple[SyncExpert, SyncExpert, str]:
    """The expert behind the sync loss and the one that scores (the same when ``eval_seed`` is None), and a note
    saying where they came from."""
    options = {"width": config.width, "audio_width": config.audio_width, "embed": config.embed}
    loss_expert, note = trained_expert(train, steps=config.steps, seed=config.seed, reuse=reuse, **options)
    if config.eval_seed is None or config.eval_seed == config.seed:
        return loss_expert, loss_expert, f"one expert (seed {config.seed}), {note}"
    scorer, eval_note = trained_expert(train, steps=config.steps, seed=config.eval_seed, reuse=reuse, **options)
    return loss_expert, scorer, f"loss expert (seed {config.seed}) {note}; scoring expert (seed {config.eval_seed}) " \
                                f"{eval_note}"


def expert_accuracies(experts: dict[str, SyncExpert], splits: dict[str, TalkingWindows]) -> dict[str, float]:
    """``{"<expert>/<split>": accuracy}`` of each expert on in-sync / off-sync pairs (seed 1) of each split."""
    return {f"{name}/{split}": expert_accuracy(model, SyncPairs(windows, seed=1))
            for name, model in experts.items() for split, windows in splits.items()}


def train_talking_teacher(build: Callable[[], nn.Module], splits: Splits, config: TalkingTeacher,
                          expert: SyncExpert, determinants: dict[str, Any], device: str, validator: Evaluator,
                          reuse: bool = True) -> tuple[nn.Module, str]:
    """The teacher ``build()`` makes, trained with ``L1 + config.sync · L_sync`` (``expert``) on the train split,
    or read from the cache unless ``reuse`` is False; returns it in eval mode and where it came from.
    ``determinants``: what else decides the weights (the data, the expert)."""
    determinants = {**determinants, "teacher": config.model_dump(), "format": 1}

    def train(model: nn.Module) -> nn.Module:
        out = data_home() / "teachers" / "runs" / f"{PREFIX}-{digest(**determinants)}"
        objective = Objective(reconstruction_term(1.0, "l1"), sync_term(expert, config.sync))
        phase = Phase("wav2lip", objective, epochs=config.epochs, optimizer=adam(config.lr), scheduler=pix2pix_lr)
        distiller = Distiller(model, [phase], backend=Backend(device=device), batch_size=config.batch_size, seed=0,
                              forward=talking_forward, evaluator=validator, monitor="val/psnr")
        distiller.fit(splits.teacher_pool, splits.val, out=out, config={"role": "wav2lip teacher", **determinants},
                      resume=(out / "config.yaml").is_file())
        return distiller.student.cpu()

    def seeded() -> nn.Module:
        torch.manual_seed(0)
        return build()

    model, note = cached_model(seeded, train, PREFIX, reuse, **determinants)
    return model.eval(), note
