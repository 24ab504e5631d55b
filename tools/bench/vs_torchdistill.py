"""kd against torchdistill and a hand-written PyTorch loop: step time, peak memory and final accuracy.

What is compared
    The same vanilla KD (Hinton: 0.9·T²·KL(p_t‖p_s) + 0.1·CE, T = 4, AdamW lr 1e-3, no weight decay)
    with the same frozen MLP teacher (trained first with cross-entropy, so that its knowledge is worth
    distilling), the same student initialisation, the same data and the same batches in the same order:

    * kd: ``Distiller.fit`` (one phase, no validation set, no checkpoints inside the timed steps);
    * torchdistill (PyPI, a dev-only dependency): a ``DistillationBox`` built from a config dict with
      its ``KDLoss`` (``alpha`` = 0.1 on CE, ``beta`` = 0.9 on T²·KL, ``batchmean``) inside a
      ``WeightedSumLoss``, its own data loader over a tuple view of the data, fed kd's batch order
      through a sampler, driven by the loop of its examples (``pre_epoch_process``, ``forward_process``,
      ``post_forward_process``, ``post_epoch_process``);
    * the hand-written loop of ``engine_overhead.py`` (reused, not rewritten).

How
    Step time: the gap between consecutive step ends inside an epoch (first step of each epoch dropped),
    pooled over ``--rounds`` rounds; each round runs one epoch of each side, in a rotating order, so that
    drift in machine load hits all of them; each side starts each round with a fresh optimizer (so each
    peak holds the same AdamW state). A fourth timed side, ``hand-copy``, is the hand loop again on its
    own copy of the student: the A/A control. Its ratio to ``hand`` would be 1 on a perfect clock; how far
    it lands from 1 is the resolution of the other ratios on this machine.

    Peak memory: on CUDA the allocator's peak above the start of each timed epoch; on the CPU the peak of
    live tensor bytes above the start, from the torch profiler's memory events, in one extra untimed epoch
    per side after the timed rounds (the process's resident set does not grow at these sizes: the C
    allocator reuses what it holds). A warm-up checks that the three compute the same losses from the same
    start. Accuracy: for each of ``--seeds`` seeds, a fresh student (initialised from the seed) is trained
    ``--epochs`` epochs by each side on the same batches and scored on a held-out set; the sides must agree
    within seed noise (the gap between the means at most twice the larger standard deviation over seeds,
    plus 0.5 points).

Targets: kd/hand ≤ 1.05 and kd/torchdistill ≤ 1.00 (median step time). Run with ``--help`` for the
settings; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_common import (
    CE_WEIGHT,
    KD_WEIGHT,
    TEMPERATURE,
    PeakMemory,
    PeakTensorMemory,
    bench_now,
    bench_parser,
    check_args,
    mlp,
    sync,
    use_clock,
    versions,
)
from engine_overhead import distiller_fit, hand_fit, summary
from kd_core import Backend
from kd_core.data import epoch_batches
from kd_core.testing import BlobDataset
from torch import nn
from torch.utils.data import Dataset, Sampler

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "vs_torchdistill.json"
TARGET_HAND, TARGET_TORCHDISTILL = 1.05, 1.00  # kd/hand: ≤ 1.05 since 2026-12-06 (issue #15: a simpler core)
SIDES = ("kd", "torchdistill", "hand")
CONTROL = "hand-copy"  # a second, identical hand loop on its own student: the A/A control of the timing
TIMED = (*SIDES, CONTROL)


class TupleView(Dataset):
    """The same samples as ``(input, label)`` pairs, the form torchdistill's loaders expect."""

    def __init__(self, data: BlobDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.data[index]
        return sample["input"], sample["label"]


class KDOrder(Sampler[int]):
    """Yields kd's sample order for ``(seed, epoch)``, so that torchdistill's batches equal kd's."""

    def __init__(self, dataset: Dataset, batch_size: int = 64, seed: int = 0) -> None:
        self.size, self.batch_size, self.seed, self.epoch = len(dataset), batch_size, seed, 0  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        for batch in epoch_batches(self.size, self.batch_size, self.seed, 0, self.epoch):
            yield from batch

    def __len__(self) -> int:
        return self.size


def torchdistill_box(teacher: nn.Module, student: nn.Module, train: Dataset, args: argparse.Namespace,
                     seed: int, device: torch.device) -> Any:
    """A torchdistill ``DistillationBox`` for vanilla KD with kd's batch order."""
    from torchdistill.core.distillation import get_distillation_box

    config = {
        "num_epochs": 1,
        "train_data_loader": {"dataset_id": "train", "requires_supp": True,
                              "sampler": {"class_or_func": KDOrder,
                                          "kwargs": {"batch_size": args.batch_size, "seed": seed}},
                              "kwargs": {"batch_size": args.batch_size, "num_workers": 0, "drop_last": False}},
        "teacher": {"forward_proc": "forward_batch_only", "forward_hook": {"input": [], "output": []},
                    "requires_grad": False, "wrapper": None},
        "student": {"forward_proc": "forward_batch_only", "forward_hook": {"input": [], "output": []},
                    "requires_grad": True, "wrapper": None},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": args.lr, "weight_decay": 0.0}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {
            "criterion": {"key": "KDLoss", "kwargs": {
                "student_module_path": ".", "student_module_io": "output",
                "teacher_module_path": ".", "teacher_module_io": "output",
                "temperature": TEMPERATURE, "alpha": CE_WEIGHT, "beta": KD_WEIGHT, "reduction": "batchmean"}},
            "weight": 1.0}}}},
    }
    logging.getLogger("torchdistill").setLevel(logging.WARNING)
    return get_distillation_box(teacher, student, {"train": TupleView(train)}, config, device, None, False, 1)


def torchdistill_epoch(box: Any, epoch: int, device: torch.device,
                       record_losses: bool = False) -> tuple[list[float], list[float]]:
    """One epoch of torchdistill's own loop; returns the step gaps and (optionally) the losses."""
    box.train_data_loader.sampler.epoch = epoch
    box.pre_epoch_process(epoch=epoch)
    gaps: list[float] = []
    losses: list[float] = []
    last: float | None = None
    for sample_batch, targets, supp_dict in box.train_data_loader:
        sample_batch, targets = sample_batch.to(device), targets.to(device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        if record_losses:
            losses.append(float(loss.detach()))
        sync(device)
        now = bench_now()
        if last is not None:
            gaps.append(now - last)
        last = now
    box.post_epoch_process()
    return gaps, losses


def train_teacher(teacher: nn.Module, train: BlobDataset, epochs: int, batch_size: int, device: torch.device) -> None:
    """Plain cross-entropy training of the teacher (so that it has knowledge to distill), then eval mode."""
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=1e-3)
    teacher.train()
    for epoch in range(epochs):
        for batch in epoch_batches(len(train), batch_size, 12345, 0, epoch):
            x, y = train.inputs[batch].to(device), train.labels[batch].to(device)
            F.cross_entropy(teacher(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    teacher.eval()


def accuracy(model: nn.Module, data: BlobDataset, device: torch.device) -> float:
    """Top-1 accuracy (%) of ``model`` on ``data``."""
    model.eval()
    with torch.inference_mode():
        predicted = model(data.inputs.to(device)).argmax(-1).cpu()
    model.train()
    return float((predicted == data.labels).float().mean()) * 100


def run_side(side: str, student: nn.Module, teacher: nn.Module, train: BlobDataset, args: argparse.Namespace,
             seed: int, epochs: int, device: torch.device, work: Path, box: Any = None,
             record_losses: bool = False) -> tuple[list[float], list[float]]:
    """``epochs`` epochs of one side on ``student``; returns step gaps and (optionally) losses."""
    if side == "kd":
        run_args = argparse.Namespace(**{**vars(args), "epochs": epochs})
        clock = distiller_fit(student, teacher, train, run_args, seed, work / f"kd-{time.monotonic_ns()}", device)
        return clock.gaps, clock.losses
    if side in ("hand", CONTROL):
        optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
        return hand_fit(student, teacher, optimizer, train, args.batch_size, seed, epochs, device, record_losses)
    box = box or torchdistill_box(teacher, student, train, args, seed, device)
    gaps: list[float] = []
    losses: list[float] = []
    for epoch in range(epochs):
        g, losses_epoch = torchdistill_epoch(box, epoch, device, record_losses)
        gaps += g
        losses += losses_epoch
    return gaps, losses


def accuracy_study(teacher: nn.Module, train: BlobDataset, test: BlobDataset, args: argparse.Namespace,
                   device: torch.device, work: Path) -> dict[str, Any]:
    """Final test accuracy of each side over ``args.seeds`` seeds (fresh student per seed and side)."""
    table: dict[str, list[float]] = {side: [] for side in SIDES}
    for seed in range(args.seeds):
        initial = mlp(args.student, seed=1000 + seed)
        for side in SIDES:
            student = copy.deepcopy(initial).to(device)
            run_side(side, student, teacher, train, args, seed, args.epochs, device, work)
            table[side].append(accuracy(student, test, device))
    means = {side: statistics.fmean(v) for side, v in table.items()}
    stds = {side: statistics.stdev(v) if len(v) > 1 else 0.0 for side, v in table.items()}
    noise = 2 * max(stds.values()) + 0.5
    agree = max(means.values()) - min(means.values()) <= noise
    return {"per_seed": table, "mean": means, "std": stds, "allowed_gap": noise, "agree": agree,
            "teacher_accuracy": accuracy(teacher, test, device)}


def timed_rounds(teacher: nn.Module, train: BlobDataset, args: argparse.Namespace, device: torch.device,
                 work: Path) -> tuple[dict[str, list[float]], dict[str, list[float]], list[dict[str, float]]]:
    """Interleaved rounds: one epoch per side per round, in rotating order; step gaps and peak memory."""
    initial = mlp(args.student, seed=args.seed + 2)
    students = {side: copy.deepcopy(initial).to(device) for side in TIMED}
    gaps: dict[str, list[float]] = {side: [] for side in TIMED}
    memory: dict[str, list[float]] = {side: [] for side in TIMED}
    per_round: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = TIMED[r % len(TIMED):] + TIMED[:r % len(TIMED)]
        medians: dict[str, float] = {}
        for side in order:
            with PeakMemory(device) as peak:
                # every side starts the round with a fresh optimizer (kd's fit and the hand loop make one), so
                # each peak holds the same AdamW state; torchdistill's box is rebuilt for that reason
                g, _ = run_side(side, students[side], teacher, train, args, args.seed + 1 + r, 1, device, work)
            gaps[side] += g
            memory[side].append(peak.mib)
            medians[side] = statistics.median(g)
        per_round.append({f"{s}_ms": medians[s] * 1e3 for s in TIMED} |
                         {"kd/hand": medians["kd"] / medians["hand"],
                          "kd/torchdistill": medians["kd"] / medians["torchdistill"],
                          f"{CONTROL}/hand": medians[CONTROL] / medians["hand"]})
        print(f"round {r + 1:2d}/{args.rounds}: " + "  ".join(f"{s} {medians[s] * 1e3:7.3f} ms" for s in TIMED))
    if device.type == "cpu":  # no allocator statistics: count tensor bytes, in untimed epochs
        for side in SIDES:
            with PeakTensorMemory() as peak:
                run_side(side, students[side], teacher, train, args, args.seed + 1, 1, device, work)
            memory[side] = [peak.mib]
    return gaps, memory, per_round


def warmup_check(teacher: nn.Module, train: BlobDataset, args: argparse.Namespace, device: torch.device,
                 work: Path) -> float:
    """Same start, same batches: the three sides' losses over one epoch; returns the max relative gap."""
    initial = mlp(args.student, seed=args.seed + 2)
    losses = {side: run_side(side, copy.deepcopy(initial).to(device), teacher, train, args, args.seed, 1, device,
                             work, record_losses=True)[1] for side in SIDES}
    reference = losses["hand"]
    worst = 0.0
    for side in ("kd", "torchdistill"):
        if len(losses[side]) != len(reference):
            raise SystemExit(f"{side} ran {len(losses[side])} steps, the hand loop {len(reference)}")
        worst = max(worst, *(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses[side], reference)))
    if worst > 1e-3:
        raise SystemExit(f"the sides compute different losses (max relative difference {worst:.2e})")
    return worst


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line settings (``--help`` lists them with defaults)."""
    parser = bench_parser(__doc__, "128,512,512,10", DEFAULT_JSON)
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="dataset size = this × batch size")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (one epoch of each side per round)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per side and seed in the accuracy study")
    parser.add_argument("--seeds", type=int, default=3, help="seeds in the accuracy study")
    parser.add_argument("--teacher-epochs", type=int, default=5, help="cross-entropy epochs for the teacher")
    parser.add_argument("--noise", type=float, default=6.0, help="BlobDataset noise (harder data, < 100 %% accuracy)")
    args = parser.parse_args(argv)
    check_args(parser, args, ("threads", "batch_size", "steps_per_epoch", "rounds", "epochs", "seeds"))
    return args


def _ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return a["median_ms"] / b["median_ms"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison, print it and write the JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_clock(args.clock)
    device = Backend(device=args.device, distributed="none").device
    size = args.batch_size * args.steps_per_epoch
    train, test = split(BlobDataset(size=2 * size, features=args.teacher[0], classes=args.teacher[-1],
                                    seed=args.seed, noise=args.noise), size)
    teacher = mlp(args.teacher, seed=args.seed + 1).to(device)
    train_teacher(teacher, train, args.teacher_epochs, args.batch_size, device)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = os.getloadavg()
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps_per_epoch} "
          f"steps/epoch, {args.rounds} rounds; teacher {args.teacher}, student {args.student}")
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        work = Path(tmp)
        max_rel = warmup_check(teacher, train, args, device, work)
        print(f"warm-up: same losses from the same start (max relative difference {max_rel:.2e})")
        gaps, memory, per_round = timed_rounds(teacher, train, args, device, work)
        study = accuracy_study(teacher, train, test, args, device, work)
    stats = {side: summary(gaps[side]) for side in TIMED}
    peak = {side: statistics.median(memory[side]) for side in SIDES}
    result = report(args, stats, peak, per_round, study, max_rel, started, load_start)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return result


def split(data: BlobDataset, size: int) -> tuple[BlobDataset, BlobDataset]:
    """The first ``size`` samples (training) and the rest (held out) of ``data``, as two datasets."""
    train, test = copy.copy(data), copy.copy(data)
    train.inputs, train.labels = data.inputs[:size], data.labels[:size]
    test.inputs, test.labels = data.inputs[size:], data.labels[size:]
    return train, test


def report(args: argparse.Namespace, stats: dict[str, dict[str, float]], peak: dict[str, float],
           per_round: list[dict[str, float]], study: dict[str, Any], max_rel: float, started: str,
           load_start: tuple[float, float, float]) -> dict[str, Any]:
    """Print the summary and build the JSON record."""
    vs_hand, vs_td = _ratio(stats["kd"], stats["hand"]), _ratio(stats["kd"], stats["torchdistill"])
    control = _ratio(stats[CONTROL], stats["hand"])
    print()
    for side in SIDES:
        s = stats[side]
        print(f"{side:12s} median {s['median_ms']:.3f} ms/step (p10 {s['p10_ms']:.3f}, p90 {s['p90_ms']:.3f}; "
              f"{s['steps']} steps); peak memory +{peak[side]:.1f} MiB")
    mem_ratio = peak["kd"] / peak["torchdistill"] if peak["torchdistill"] > 0 else float("nan")
    print(f"kd/hand {vs_hand:.3f} (target ≤ {TARGET_HAND}: {'holds' if vs_hand <= TARGET_HAND else 'MISSED'}); "
          f"kd/torchdistill {vs_td:.3f} (target ≤ {TARGET_TORCHDISTILL}: "
          f"{'holds' if vs_td <= TARGET_TORCHDISTILL else 'MISSED'}); peak memory kd/torchdistill {mem_ratio:.2f}")
    print(f"A/A control: {CONTROL}/hand {control:.3f} (two identical loops; how far from 1 this lands is the "
          "resolution of the ratios above)")
    for side in SIDES:
        print(f"accuracy {side:12s} {study['mean'][side]:.2f} ± {study['std'][side]:.2f} % "
              f"(seeds: {', '.join(f'{a:.2f}' for a in study['per_seed'][side])})")
    print(f"teacher {study['teacher_accuracy']:.2f} %; sides agree within seed noise "
          f"(gap ≤ {study['allowed_gap']:.2f} points): {study['agree']}")
    return {
        "benchmark": "vs_torchdistill", "date": started,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": versions() | {"torchdistill": _version("torchdistill")},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "warmup_max_relative_loss_difference": max_rel,
        "step": stats, "ratio_kd_hand": vs_hand, "ratio_kd_torchdistill": vs_td, "ratio_control_hand": control,
        "targets": {"kd/hand": TARGET_HAND, "kd/torchdistill": TARGET_TORCHDISTILL},
        "target_holds": {"kd/hand": vs_hand <= TARGET_HAND, "kd/torchdistill": vs_td <= TARGET_TORCHDISTILL},
        "peak_memory_mib": peak, "peak_memory_ratio_kd_torchdistill": mem_ratio,
        "memory_method": "cuda allocator peak" if args.device.startswith("cuda") else
        "tensor bytes (torch profiler memory events, one untimed epoch per side)",
        "per_round": per_round, "accuracy": study,
    }


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
