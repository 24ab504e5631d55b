"""Engine overhead: ``Distiller`` step time against a hand-written PyTorch loop doing the same work.

What is measured
    The median wall-clock time of one optimizer step of Hinton KD (0.9·T²·KL(p_t‖p_s) + 0.1·CE,
    T = 4, AdamW) with a frozen MLP teacher and an MLP student, run two ways on the same models,
    the same data and the same batches in the same order:

    * ``Distiller.fit`` (one phase, no validation set, ``checkpoint_every=0``), timed by a
      ``Callback`` that reads ``time.perf_counter()`` in ``on_step_end``;
    * a plain loop: teacher forward under ``torch.inference_mode``, student forward, the same loss
      written with ``torch.nn.functional``, backward, ``AdamW.step``, ``zero_grad``, over a
      ``DataLoader`` whose batches come from ``kd_core.data.epoch_batches`` (the engine's sampler).

How
    A step's time is the gap between two consecutive step ends inside one epoch, so it includes
    fetching and collating the batch and, for the Distiller, everything it does per step (taps,
    objective, logging one ``metrics.jsonl`` line, callbacks). The first step of every epoch is
    dropped in both loops (it pays for creating the loader), and so are epoch ends: no validation,
    and the checkpoints the engine writes at epoch and fit ends fall outside any counted gap.

    The two loops are interleaved in one process: each round runs one Distiller fit (``--epochs``
    epochs) and the same number of hand-loop steps over the same batches, alternating which goes
    first, so that drift in machine load hits both. A warm-up round comes first; it also checks
    that both loops compute the same losses from the same initial weights. On CUDA both loops
    synchronise before reading the clock (the Distiller does anyway: it logs the loss as a float).

    The result is the ratio of the pooled per-step medians, Distiller / hand (target ≤ 1.03),
    with the absolute times, per-round ratios and a rough attribution of the difference (cost of
    one ``metrics.jsonl`` write, and of the engine's data path against the plain ``DataLoader``).

Run ``python tools/bench/engine_overhead.py --help`` for the settings; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_common import (
    CE_WEIGHT,
    KD_WEIGHT,
    TEMPERATURE,
    bench_now,
    bench_parser,
    check_args,
    hinton_objective,
    mlp,
    sync,
    use_clock,
    versions,
)
from kd_core import Backend, Callback, Distiller, FrozenTeacher, Phase
from kd_core.data import IndexedDataset, epoch_batches, loader
from kd_core.engine import adamw
from kd_core.runs import RunDir
from kd_core.testing import BlobDataset
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "engine_overhead.json"
TARGET = 1.03


class StepClock(Callback):
    """Records the gap between consecutive step ends within an epoch (and the logged losses)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.gaps: list[float] = []
        self.losses: list[float] = []
        self._last: float | None = None

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        self._last = None

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        sync(self.device)
        now = bench_now()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now
        self.losses.append(logs["loss/total"])

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self._last = None  # the next gap would span the epoch end (and its checkpoint): not counted


def hand_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same loss, written directly: 0.9·T²·KL(p_t‖p_s) + 0.1·CE."""
    t = TEMPERATURE
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                  reduction="batchmean", log_target=True)
    return KD_WEIGHT * t * t * kl + CE_WEIGHT * F.cross_entropy(student_logits, labels)


def hand_fit(student: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer, train: Dataset,
             batch_size: int, seed: int, epochs: int, device: torch.device,
             record_losses: bool = False) -> tuple[list[float], list[float]]:
    """The plain loop over the engine's batches; returns the step gaps and (optionally) the losses."""
    gaps: list[float] = []
    losses: list[float] = []
    student.train()
    teacher.eval()
    for epoch in range(epochs):
        batches = epoch_batches(len(train), batch_size, seed, 0, epoch)  # type: ignore[arg-type]
        loader = DataLoader(train, batch_sampler=batches, collate_fn=default_collate)
        last: float | None = None
        for raw in loader:
            x, y = raw["input"].to(device), raw["label"].to(device)
            with torch.inference_mode():
                teacher_logits = teacher(x)
            loss = hand_loss(student(x), teacher_logits.clone(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if record_losses:
                losses.append(float(loss.detach()))
            sync(device)
            now = bench_now()
            if last is not None:
                gaps.append(now - last)
            last = now
    return gaps, losses


def distiller_fit(student: nn.Module, teacher: nn.Module, train: Dataset, args: argparse.Namespace, seed: int,
                  out: Path, device: torch.device) -> StepClock:
    """One ``Distiller.fit`` of ``args.epochs`` epochs; returns its clock."""
    clock = StepClock(device)
    distiller = Distiller(
        student, [Phase("distill", hinton_objective(), epochs=args.epochs, optimizer=adamw(lr=args.lr))],
        teacher=FrozenTeacher(teacher), backend=Backend(device=args.device, distributed="none"),
        callbacks=[clock], batch_size=args.batch_size, seed=seed, checkpoint_every=0)
    distiller.fit(train, None, out=out)
    return clock


def summary(gaps: Sequence[float]) -> dict[str, float]:
    """Median, mean and 10th/90th percentiles of step gaps, in milliseconds."""
    ms = sorted(g * 1e3 for g in gaps)
    q = statistics.quantiles(ms, n=10) if len(ms) > 1 else [ms[0]] * 9
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms), "p10_ms": q[0],
            "p90_ms": q[-1], "steps": len(ms)}


def compare_us(engine: Callable[[], object], hand: Callable[[], object], number: int = 50,
               repeat: int = 15) -> tuple[float, float]:
    """Best-of-``repeat`` mean time per call of two functions, timed alternately, in microseconds."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((engine, hand)):
            best[i] = min(best[i], timeit.timeit(fn, number=number) / number * 1e6)
    return best[0], best[1]


def attribution(train: Dataset, teacher: nn.Module, student: nn.Module, args: argparse.Namespace,
                backend: Backend, workdir: Path) -> dict[str, float]:
    """Micro-measures of the per-step pieces where the engine does more than the hand loop, in µs.

    Each pair times the engine's piece and the hand loop's equivalent on one batch: fetching and
    collating a batch (``kd_core.data.loader`` + ``Backend.to_device`` vs a plain ``DataLoader``), the
    teacher call (``FrozenTeacher`` vs ``inference_mode`` + clone), the loss forward and backward
    (``Objective`` vs ``hand_loss``), and logging (``log_values`` + one ``metrics.jsonl`` line vs
    nothing). They add up to roughly, not exactly, the measured overhead.
    """
    device = backend.device
    batches = epoch_batches(len(train), args.batch_size, args.seed, 0, 0)  # type: ignore[arg-type]
    indexed = IndexedDataset(train)

    def engine_fetch() -> None:
        for raw in loader(train, batches[:8]):
            backend.to_device(raw)

    def hand_fetch() -> None:
        for raw in DataLoader(train, batch_sampler=batches[:8], collate_fn=default_collate):
            raw["input"].to(device), raw["label"].to(device)

    batch = backend.to_device(default_collate([indexed[i] for i in batches[0]]))
    x, y = batch["input"], batch["label"]
    frozen = FrozenTeacher(teacher)

    def hand_teacher() -> torch.Tensor:
        with torch.inference_mode():
            out = teacher(x)
        return out.clone()

    with torch.no_grad():
        t_logits = teacher(x)
        s_logits = student(x)
    s_leaf = s_logits.clone().requires_grad_(True)
    objective = hinton_objective()

    def engine_loss() -> None:
        objective({"logits": s_leaf}, {"logits": t_logits}, batch, 0.5).total.backward()

    def hand_loss_step() -> None:
        hand_loss(s_leaf, t_logits, y).backward()

    run = RunDir(workdir / "log-probe")
    result = objective({"logits": s_leaf}, {"logits": t_logits}, batch, 0.5)

    def engine_log() -> None:
        run.log({"step": 1, "phase": 0, "epoch": 0.5, "lr": args.lr, **result.log_values()})

    fetch = compare_us(engine_fetch, hand_fetch, number=2)
    pieces = {
        "batch_fetch": (fetch[0] / 8, fetch[1] / 8),
        "teacher_call": compare_us(lambda: frozen(batch), hand_teacher),
        "loss_forward_backward": compare_us(engine_loss, hand_loss_step),
        "logging": compare_us(engine_log, lambda: None),
    }
    return {f"{name}_{side}": value for name, (engine, hand) in pieces.items()
            for side, value in (("engine", engine), ("hand", hand))}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "128,512,512,10", DEFAULT_JSON)
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="dataset size = this × batch size")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per Distiller fit (one round)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (each: one fit + the hand loop)")
    args = parser.parse_args(argv)
    check_args(parser, args, ("threads", "batch_size", "steps_per_epoch", "epochs", "rounds"))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_clock(args.clock)
    backend = Backend(device=args.device, distributed="none")
    device = backend.device
    train = BlobDataset(size=args.batch_size * args.steps_per_epoch, features=args.teacher[0],
                        classes=args.teacher[-1], seed=args.seed)
    teacher = mlp(args.teacher, seed=args.seed + 1).to(device).eval()
    initial = mlp(args.student, seed=args.seed + 2)
    student_d, student_h = copy.deepcopy(initial).to(device), copy.deepcopy(initial).to(device)
    hand_optimizer = torch.optim.AdamW(student_h.parameters(), lr=args.lr, weight_decay=0.0)  # as kd_core adamw()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.steps_per_epoch} steps/epoch × {args.epochs} epoch(s) × {args.rounds} rounds; "
          f"teacher {args.teacher}, student {args.student}")

    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        work = Path(tmp)
        # warm-up, and a check that both loops do the same work: same start, same batches, same losses
        warm = distiller_fit(student_d, teacher, train, args, args.seed, work / "warmup", device)
        _, hand_losses = hand_fit(student_h, teacher, hand_optimizer, train, args.batch_size, args.seed,
                                  args.epochs, device, record_losses=True)
        max_rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(warm.losses, hand_losses))
        print(f"warm-up: {len(hand_losses)} steps each; max relative loss difference {max_rel:.2e}")
        if len(warm.losses) != len(hand_losses) or max_rel > 1e-3:
            raise SystemExit(f"the loops differ: {len(warm.losses)} vs {len(hand_losses)} steps, "
                             f"max relative loss difference {max_rel:.2e}")

        distiller_gaps: list[float] = []
        hand_gaps: list[float] = []
        per_round: list[dict[str, float]] = []
        for r in range(args.rounds):
            seed = args.seed + 1 + r
            order = ("distiller", "hand") if r % 2 == 0 else ("hand", "distiller")
            gaps: dict[str, list[float]] = {}
            for which in order:
                if which == "distiller":
                    gaps[which] = distiller_fit(student_d, teacher, train, args, seed, work / f"round{r}", device).gaps
                else:
                    gaps[which] = hand_fit(student_h, teacher, hand_optimizer, train, args.batch_size, seed,
                                           args.epochs, device)[0]
            distiller_gaps += gaps["distiller"]
            hand_gaps += gaps["hand"]
            d_med, h_med = statistics.median(gaps["distiller"]), statistics.median(gaps["hand"])
            per_round.append({"distiller_ms": d_med * 1e3, "hand_ms": h_med * 1e3, "ratio": d_med / h_med})
            print(f"round {r + 1:2d}/{args.rounds}: distiller {d_med * 1e3:7.3f} ms  hand {h_med * 1e3:7.3f} ms  "
                  f"ratio {d_med / h_med:.3f}")

        pieces = attribution(train, teacher, student_h, args, backend, work)

    d, h = summary(distiller_gaps), summary(hand_gaps)
    ratio = d["median_ms"] / h["median_ms"]
    round_ratios = [p["ratio"] for p in per_round]
    overhead_us = (d["median_ms"] - h["median_ms"]) * 1e3
    print(f"\nDistiller  median {d['median_ms']:.3f} ms/step (mean {d['mean_ms']:.3f}, "
          f"p10 {d['p10_ms']:.3f}, p90 {d['p90_ms']:.3f}; {d['steps']} steps)")
    print(f"hand loop  median {h['median_ms']:.3f} ms/step (mean {h['mean_ms']:.3f}, "
          f"p10 {h['p10_ms']:.3f}, p90 {h['p90_ms']:.3f}; {h['steps']} steps)")
    print(f"per-round ratios: median {statistics.median(round_ratios):.3f}, "
          f"min {min(round_ratios):.3f}, max {max(round_ratios):.3f}")
    print(f"overhead {overhead_us:.0f} µs/step. Micro-measures, engine vs hand (µs per step):")
    for name in ("batch_fetch", "teacher_call", "loss_forward_backward", "logging"):
        engine, hand = pieces[f"{name}_engine"], pieces[f"{name}_hand"]
        print(f"  {name:22s} {engine:8.0f} vs {hand:8.0f}  (+{engine - hand:.0f})")
    verdict = "holds" if ratio <= TARGET else "MISSED"
    print(f"ratio Distiller/hand (median per step): {ratio:.3f}  (target ≤ {TARGET}: {verdict})")

    result = {
        "benchmark": "engine_overhead",
        "date": started,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": versions(),
        "load_average": {"start": load_start, "end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "warmup_max_relative_loss_difference": max_rel,
        "distiller": d,
        "hand": h,
        "ratio": ratio,
        "target": TARGET,
        "target_holds": ratio <= TARGET,
        "per_round": per_round,
        "overhead_per_step_us": overhead_us,
        "attribution_us": pieces,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
