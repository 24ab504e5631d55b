"""One class-incremental task, trained through ``Distiller``: its variant, its data mix and its objective.

Jodelet, Liu, Phua and Murata, "Class-Incremental Learning using Diffusion Model for Distillation and
Replay", arXiv:2306.17560. For task t > 0 the loss on batches drawn from current data D_t ∪ exemplar
memory 𝓜 ∪ generated old-class images S_{<t} is

    L = CE(labelled samples) + λ · T² · KL(p_{t−1}^T ‖ p_t^T) over the old classes' logits,

with p_{t−1} from the frozen previous model f_{t−1} (a ``FrozenTeacher``). Variants:

- **A** fine-tune: CE on D_t alone;
- **B** exemplars + logit KD (LwF/iCaRL-like): CE and KD on D_t ∪ 𝓜;
- **C** B + generated samples in KD only (the "external data for distillation" baseline): S_{<t} enter
  the batches with label ``IGNORE``, so they take part in the KD term and not in CE;
- **D** B + generated samples in both KD and CE replay (the paper);
- **E** exemplar replay: CE on D_t ∪ 𝓜, no KD (what B's KD adds is B − E);
- **F** B's training, classified by iCaRL's nearest mean of exemplars (``kd_vision.cil.nme``) instead of the
  softmax head: the same network as B for the same seed, a second classifier on it;
- **G** D's training (the paper), classified by the nearest mean of exemplars: the paper's method on an NME base.

Task 0 is plain CE for every variant. Each task is one ``fit`` (one phase) continuing from the previous
task's weights with a fresh optimizer; no loop of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from kd_core import Backend, Objective, Term
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from kd_vision.cil.heads import SeenClassesForward
from kd_vision.cil.losses import IGNORE, labelled_cross_entropy, old_class_kl
from kd_vision.methods.common import TrainConfig, fit, single_phase

__all__ = ["VARIANTS", "GeneratedDataset", "Variant", "VariantName", "task_dataset", "task_objective", "train_task"]

VariantName = Literal["A", "B", "C", "D", "E", "F", "G"]


@dataclass(frozen=True)
class Variant:
    """What a variant uses: exemplar memory, KD from f_{t−1}, generated images in KD and in CE, and whether it
    classifies by the nearest mean of exemplars (``nme``) instead of the softmax head."""

    name: str
    description: str
    memory: bool
    kd: bool
    generated_kd: bool
    generated_ce: bool
    nme: bool = False

    @property
    def generated(self) -> bool:
        """Whether the variant draws generated images at all."""
        return self.generated_kd or self.generated_ce


VARIANTS: dict[str, Variant] = {
    "A": Variant("A", "fine-tune", memory=False, kd=False, generated_kd=False, generated_ce=False),
    "B": Variant("B", "exemplars + logit KD (LwF/iCaRL-like)", memory=True, kd=True, generated_kd=False,
                 generated_ce=False),
    "C": Variant("C", "B + generated old-class images in KD only", memory=True, kd=True, generated_kd=True,
                 generated_ce=False),
    "D": Variant("D", "B + generated old-class images in KD and CE (the paper)", memory=True, kd=True,
                 generated_kd=True, generated_ce=True),
    "E": Variant("E", "exemplar replay: CE on current data + exemplars, no KD", memory=True, kd=False,
                 generated_kd=False, generated_ce=False),
    "F": Variant("F", "B's training, nearest-mean-of-exemplars classifier (iCaRL NME)", memory=True, kd=True,
                 generated_kd=False, generated_ce=False, nme=True),
    "G": Variant("G", "D's training (the paper), nearest-mean-of-exemplars classifier", memory=True, kd=True,
                 generated_kd=True, generated_ce=True, nme=True),
}


class GeneratedDataset(Dataset):
    """Generated images as dataset items ``{"input", "label"}``; ``labelled=False`` sets every label to
    ``IGNORE`` (distillation only)."""

    def __init__(self, batch: Mapping[str, torch.Tensor], labelled: bool = True) -> None:
        self.images = batch["input"]
        self.labels = batch["label"] if labelled else torch.full_like(batch["label"], IGNORE)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": self.images[index], "label": self.labels[index]}


def task_dataset(variant: Variant, current: Dataset, memory: Dataset | None,
                 generated: Mapping[str, torch.Tensor] | None) -> Dataset:
    """D_t, plus 𝓜 and S_{<t} as the variant uses them."""
    parts = [current]
    if variant.memory and memory is not None:
        parts.append(memory)
    if variant.generated and generated is not None:
        parts.append(GeneratedDataset(generated, labelled=variant.generated_ce))
    return ConcatDataset(parts) if len(parts) > 1 else current


def task_objective(variant: Variant, old_classes: Sequence[int], temperature: float, weight: float) -> Objective:
    """CE on labelled samples, plus λ·old-class KD when the variant distils and there are old classes."""
    terms = [Term("ce", labelled_cross_entropy, student="logits", target="label")]
    if variant.kd and old_classes:
        terms.append(Term("kd", old_class_kl, student="logits", teacher="logits", weight=weight,
                          temperature=temperature, classes=tuple(old_classes)))
    return Objective(*terms)


def train_task(model: nn.Module, objective: Objective, dataset: Dataset, seen: Sequence[int], train: TrainConfig,
               out: Path, backend: Backend, label: str, progress: Any, *, seed: int, config: dict[str, Any],
               resume: bool = False) -> tuple[nn.Module, nn.Module]:
    """Train ``model`` on one task through ``Distiller`` (the previous model, frozen, as teacher when the
    objective distils); return ``(model, f_{t−1})``."""
    previous = copy.deepcopy(model)
    teacher = previous if objective.needs_teacher else None
    trained = fit(model, single_phase(objective, train, name="task"), {"train": dataset}, out, backend, label,
                  progress, seed=seed, batch_size=train.batch_size, config=config, teacher=teacher, resume=resume,
                  forward=SeenClassesForward(seen))
    return trained, previous
