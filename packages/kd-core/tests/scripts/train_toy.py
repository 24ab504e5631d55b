"""A toy distillation run driven by tests in subprocesses (kill/resume, several processes).

Usage: python train_toy.py OUT [--resume] [--kill-after-step N] [--epochs E] [--digest FILE]
                            [--nan-rank R --nan-at-call C]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal

import torch
from kd_core import Backend, Callback, Distiller, FrozenTeacher, Objective, Phase, Term, cross_entropy, kl_divergence
from kd_core.testing import BlobDataset, tiny_mlp


class KillAfter(Callback):
    """SIGKILL this process right after optimizer step ``n`` (no cleanup, like a crash)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_step_end(self, distiller, logs) -> None:
        if distiller.global_step == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


def nan_on(rank: int, call: int):
    """A cross-entropy that turns NaN at its ``call``-th call, on process ``rank`` only."""
    calls = {"n": 0}

    def loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = cross_entropy(student, target)
        if int(os.environ.get("RANK", "0")) == rank and calls["n"] == call:
            value = value * float("nan")
        return value

    return loss


def digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after-step", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--digest", default="")
    parser.add_argument("--nan-rank", type=int, default=-1, help="the process whose CE turns NaN (-1: none)")
    parser.add_argument("--nan-at-call", type=int, default=0, help="at which call of its CE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    teacher = tiny_mlp(hidden=32, seed=1)
    student = tiny_mlp(hidden=8, dropout=0.2, seed=2)
    objective = Objective(
        Term("kd", kl_divergence, teacher="logits", weight=0.7, temperature=2.0),
        Term("ce", nan_on(args.nan_rank, args.nan_at_call) if args.nan_rank >= 0 else cross_entropy,
             target="label", weight=0.3),
    )
    callbacks = [KillAfter(args.kill_after_step)] if args.kill_after_step else []
    distiller = Distiller(student, teacher=FrozenTeacher(teacher),
                          phases=[Phase("a", objective, epochs=args.epochs),
                                  Phase("b", Objective(Term("ce", cross_entropy, target="label")), epochs=1)],
                          backend=Backend("cpu"), batch_size=8, grad_accum_steps=2, clip_grad_norm=1.0,
                          checkpoint_every=3, callbacks=callbacks, seed=5)
    distiller.fit(BlobDataset(96, seed=3), BlobDataset(32, seed=4), out=args.out, resume=args.resume)
    text = digest(student)
    if args.digest:
        rank = int(os.environ.get("RANK", "0"))
        with open(f"{args.digest}.{rank}", "w") as handle:
            handle.write(text)
    print("DIGEST", text)


if __name__ == "__main__":
    main()
