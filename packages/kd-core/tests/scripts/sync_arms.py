"""Three arms whose every trainable module must stay in step across processes, run by a test under torchrun.

Usage: torchrun --nproc_per_node 2 sync_arms.py OUT [--student-only]

Arms: "dml", a student and a co-trained teacher (``TrainableTeacher``) with BD-KD's balanced KL both ways;
"tinybert", a student whose hidden states (width 6) match a frozen teacher's (width 12) through a learned
projection (``HiddenMSE``); "reinforced", a student taught by two frozen teachers that a REINFORCE policy
(``ReinforcedWeighting``, rewarded by the train loss) selects per sample.
Each process writes OUT/rank<R>.pt: per arm, the state dict of every trainable
module before and after training, and the sample ids it trained on, in order.
``--student-only`` wraps only the student for several processes and leaves the policy's gradients unaveraged
(what kd-core did before), so the test shows what it catches.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from kd_core import (
    Backend,
    Distiller,
    FrozenTeacher,
    HiddenMSE,
    Objective,
    Phase,
    Term,
    TrainableTeacher,
    balanced_kl,
    cross_entropy,
    kl_divergence,
    reinforced,
)
from kd_core.engine import _Trained, sgd
from kd_core.reinforced import PolicyReward, ReinforcedWeighting
from kd_core.signals import Ensemble
from kd_core.testing import BlobDataset, tiny_mlp
from torch import nn


class Encoder(nn.Module):
    """``body`` (hidden states of width ``width``), then ``head`` (logits over 3 classes)."""

    def __init__(self, width: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(8, width), nn.Tanh())
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def recording(seen: list[int], student: nn.Module):
    """The default forward, noting the ids of the samples the student trains on (not the shape probe's)."""

    def forward(model: nn.Module, batch: dict[str, Any]) -> Any:
        if model is student and model.training:
            seen.extend(batch["index"].tolist())
        return model(batch["input"])

    return forward


def dml(seen: list[int]) -> tuple[Distiller, dict[str, nn.Module]]:
    student, teacher = tiny_mlp(hidden=8, seed=2), tiny_mlp(hidden=16, seed=1)
    signal = TrainableTeacher(teacher, Objective(Term("ce", cross_entropy, target="label"),
                                                 Term("bkd", balanced_kl, teacher="logits", temperature=2.0)),
                              optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    objective = Objective(Term("bkd", balanced_kl, teacher="logits", temperature=2.0),
                          Term("ce", cross_entropy, target="label"))
    distiller = Distiller(student, [Phase("online", objective, epochs=2, optimizer=sgd(0.1))], teacher=signal,
                          backend=Backend("cpu"), batch_size=8, forward=recording(seen, student), seed=3)
    return distiller, {"student": student, "teacher": teacher}


def tinybert(seen: list[int]) -> tuple[Distiller, dict[str, nn.Module]]:
    student, teacher = Encoder(6, seed=2), Encoder(12, seed=1)
    torch.manual_seed(4)
    projection = HiddenMSE(6, 12)
    objective = Objective(Term("hidden", projection, student="body", teacher="body"),
                          Term("ce", cross_entropy, target="label"))
    distiller = Distiller(student, [Phase("intermediate", objective, epochs=2, optimizer=sgd(0.1))],
                          teacher=FrozenTeacher(teacher), backend=Backend("cpu"), batch_size=8,
                          forward=recording(seen, student), seed=3)
    return distiller, {"student": student, "projection": projection}


def reinforced_arm(seen: list[int]) -> tuple[Distiller, dict[str, nn.Module]]:
    student = tiny_mlp(hidden=8, seed=2)
    weighting = ReinforcedWeighting(2, 3, hidden=4, lr=0.05, seed=5)
    objective = Objective(Term("kd", kl_divergence, teacher="logits", temperature=2.0,
                               sample_weight=weighting.sample_weights),
                          Term("ce", cross_entropy, target="label"))
    signal = Ensemble([FrozenTeacher(tiny_mlp(hidden=16, seed=s)) for s in (6, 7)], weighting)
    distiller = Distiller(student, [Phase("train", objective, epochs=2, optimizer=sgd(0.1))], teacher=signal,
                          backend=Backend("cpu"), batch_size=8, forward=recording(seen, student), seed=3,
                          callbacks=[PolicyReward(weighting, kind="train_loss")])
    return distiller, {"student": student, "policy": weighting.policy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--student-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.student_only:
        def wrap_the_student_only(self: Distiller, phase: Phase) -> None:
            self._trained = self.backend.wrap(_Trained(self.student, nn.Module(), {}))

        Distiller._wrap = wrap_the_student_only  # type: ignore[method-assign]
        reinforced.mean_over_processes = lambda tensors: None
    written: dict[str, Any] = {}
    for name, arm in (("dml", dml), ("tinybert", tinybert), ("reinforced", reinforced_arm)):
        seen: list[int] = []
        distiller, modules = arm(seen)
        before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in modules.items()}
        distiller.fit(BlobDataset(64, seed=3), out=Path(args.out) / name)
        written[name] = {"before": before, "after": {k: m.state_dict() for k, m in modules.items()}, "seen": seen}
    torch.save(written, Path(args.out) / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    main()
