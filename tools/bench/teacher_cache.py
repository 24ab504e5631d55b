"""Teacher cache: ``Distiller`` epoch time with a ``CachedTeacher`` against an online ``FrozenTeacher``.

What is measured
    The wall-clock time of one training epoch of Hinton KD (0.9·T²·KL + 0.1·CE, T = 4, AdamW) of
    the same MLP student on the same data, with the teacher's logits either computed online every
    step (``FrozenTeacher``) or read from a disk cache built once beforehand (``CachedTeacher``).
    The teacher is an MLP of at least 8× the student's multiply-accumulates per sample (counted with
    ``kd_core.metrics.count_macs``; the script refuses a smaller ratio).

How
    The cache is built once, explicitly, over the dataset in order (as ``Distiller.fit`` would
    build it), and that build is timed on its own, as is loading it (the first call of a fresh
    ``CachedTeacher``). Then each round runs one ``Distiller.fit`` of one epoch per signal, the two
    in alternating order, so that drift in machine load hits both; each signal keeps its own
    student copy (same initial weights), and both see the same batches in each round. An epoch's
    time runs from ``on_phase_start`` to ``on_epoch_end`` in a ``Callback``: it includes creating
    the loader and every step, and excludes the fit's set-up and its checkpoint writes (there is no
    validation set and ``checkpoint_every=0``).

    A forward hook on the teacher counts its calls inside each timed epoch: zero is required for
    the cached runs (the script fails otherwise), one per step for the online ones. A warm-up round
    (not timed) checks that both signals give the same losses from the same initial weights.

    The result is the ratio of median epoch times, cached / online (target ≤ 0.5).

Run ``python tools/bench/teacher_cache.py --help`` for the settings; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from bench_common import bench_now, bench_parser, check_args, hinton_objective, mlp, sync, use_clock, versions
from kd_core import (
    Backend,
    CachedTeacher,
    Callback,
    Distiller,
    FrozenTeacher,
    Phase,
)
from kd_core.data import IndexedDataset, in_order
from kd_core.engine import adamw
from kd_core.metrics import count_macs
from kd_core.signals import Signal, default_forward
from kd_core.taps import LOGITS
from kd_core.testing import BlobDataset
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "teacher_cache.json"
TARGET = 0.5
MIN_MAC_RATIO = 8.0


class ForwardCounter:
    """Counts forward calls of a module through a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.calls += 1


class EpochClock(Callback):
    """Times the (single) epoch of a fit, counts teacher forwards inside it and keeps step losses."""

    def __init__(self, device: torch.device, counter: ForwardCounter) -> None:
        self.device, self.counter = device, counter
        self.seconds = 0.0
        self.teacher_calls = 0
        self.steps = 0
        self.losses: list[float] = []
        self._start = 0.0
        self._calls_at_start = 0

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        sync(self.device)
        self._calls_at_start = self.counter.calls
        self._start = bench_now()

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self.steps += 1
        self.losses.append(logs["loss/total"])

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        sync(self.device)
        self.seconds = bench_now() - self._start
        self.teacher_calls = self.counter.calls - self._calls_at_start


def one_epoch(student: nn.Module, signal: Signal, train: Dataset, args: argparse.Namespace, seed: int,
              out: Path, device: torch.device, counter: ForwardCounter) -> EpochClock:
    """One ``Distiller.fit`` of one epoch against ``signal``; returns its clock."""
    clock = EpochClock(device, counter)
    distiller = Distiller(
        student, [Phase("distill", hinton_objective(), epochs=1, optimizer=adamw(lr=args.lr))], teacher=signal,
        backend=Backend(device=args.device, distributed="none"), callbacks=[clock], batch_size=args.batch_size,
        eval_batch_size=args.cache_batch_size, seed=seed, checkpoint_every=0)
    distiller.fit(train, None, out=out)
    return clock


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "128,1024,1024,10", DEFAULT_JSON)
    parser.add_argument("--cache-batch-size", type=int, default=256, help="batch size of the cache build")
    parser.add_argument("--steps-per-epoch", type=int, default=48, help="dataset size = this × batch size")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (each: one cached + one online epoch)")
    parser.add_argument("--top-k", type=int, default=None, help="cache only the top-k logits (default: all)")
    args = parser.parse_args(argv)
    check_args(parser, args, ("threads", "batch_size", "cache_batch_size", "steps_per_epoch", "rounds"))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_clock(args.clock)
    device = Backend(device=args.device, distributed="none").device
    train = BlobDataset(size=args.batch_size * args.steps_per_epoch, features=args.teacher[0],
                        classes=args.teacher[-1], seed=args.seed)
    teacher = mlp(args.teacher, seed=args.seed + 1).to(device).eval()
    initial = mlp(args.student, seed=args.seed + 2).to(device)
    example = train[0]["input"].unsqueeze(0).to(device)
    teacher_macs, student_macs = count_macs(teacher, example), count_macs(initial, example)
    mac_ratio = teacher_macs / student_macs
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.steps_per_epoch} steps/epoch, {args.rounds} rounds, top_k {args.top_k}")
    print(f"MACs per sample: teacher {args.teacher} {teacher_macs:,}, student {args.student} {student_macs:,} "
          f"({mac_ratio:.1f}×)")
    if mac_ratio < MIN_MAC_RATIO:
        raise SystemExit(f"the teacher must cost ≥ {MIN_MAC_RATIO:g}× the student's MACs, got {mac_ratio:.1f}×")
    counter = ForwardCounter(teacher)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        work = Path(tmp)
        cache_dir = work / "cache"
        online = FrozenTeacher(teacher)
        cached = CachedTeacher(FrozenTeacher(teacher), cache_dir, top_k=args.top_k)
        cached.bind([LOGITS], default_forward)
        indexed = IndexedDataset(train)
        build_batches = DataLoader(indexed, batch_sampler=in_order(len(indexed), args.cache_batch_size),
                                   collate_fn=default_collate)
        calls = counter.calls
        sync(device)
        start = time.perf_counter()
        cached.build({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
                     for b in build_batches)
        sync(device)
        build_s = time.perf_counter() - start
        build_calls = counter.calls - calls
        cache_bytes = folder_bytes(cache_dir)
        print(f"cache build: {build_s * 1e3:.1f} ms for {len(train)} samples ({build_calls} teacher forwards, "
              f"{cache_bytes / 1024:.0f} KiB on disk)")
        fresh = CachedTeacher(FrozenTeacher(teacher), cache_dir, top_k=args.top_k)
        fresh.bind([LOGITS], default_forward)
        probe = default_collate([indexed[i] for i in range(min(args.batch_size, len(indexed)))])
        start = time.perf_counter()
        fresh(probe)
        load_s = time.perf_counter() - start
        print(f"cache load (first call of a fresh CachedTeacher): {load_s * 1e3:.1f} ms")

        students = {"cached": copy.deepcopy(initial), "online": copy.deepcopy(initial)}
        signals: dict[str, Signal] = {"cached": cached, "online": online}
        # warm-up, and a check that both signals give the same losses from the same start
        warm = {name: one_epoch(students[name], signals[name], train, args, args.seed, work / f"warmup-{name}",
                                device, counter) for name in ("cached", "online")}
        max_rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(warm["cached"].losses, warm["online"].losses))
        print(f"warm-up: max relative loss difference cached vs online {max_rel:.2e}")
        if args.top_k is None and max_rel > 1e-4:
            raise SystemExit(f"the cached teacher serves other logits than the online one ({max_rel:.2e})")

        times: dict[str, list[float]] = {"cached": [], "online": []}
        teacher_calls: dict[str, list[int]] = {"cached": [], "online": []}
        steps = warm["online"].steps
        for r in range(args.rounds):
            seed = args.seed + 1 + r
            order = ("cached", "online") if r % 2 == 0 else ("online", "cached")
            for name in order:
                clock = one_epoch(students[name], signals[name], train, args, seed, work / f"round{r}-{name}",
                                  device, counter)
                times[name].append(clock.seconds)
                teacher_calls[name].append(clock.teacher_calls)
            if teacher_calls["cached"][-1] != 0:
                raise SystemExit(f"round {r + 1}: the cached epoch ran the teacher "
                                 f"{teacher_calls['cached'][-1]} times")
            print(f"round {r + 1}/{args.rounds}: cached {times['cached'][-1] * 1e3:7.1f} ms "
                  f"(teacher forwards {teacher_calls['cached'][-1]})  online {times['online'][-1] * 1e3:7.1f} ms "
                  f"(teacher forwards {teacher_calls['online'][-1]})  "
                  f"ratio {times['cached'][-1] / times['online'][-1]:.3f}")
    counter.handle.remove()

    cached_ms = statistics.median(times["cached"]) * 1e3
    online_ms = statistics.median(times["online"]) * 1e3
    ratio = cached_ms / online_ms
    round_ratios = [c / o for c, o in zip(times["cached"], times["online"])]
    verdict = "holds" if ratio <= TARGET else "MISSED"
    print(f"\ncached  median {cached_ms:.1f} ms/epoch ({cached_ms / steps:.2f} ms/step)")
    print(f"online  median {online_ms:.1f} ms/epoch ({online_ms / steps:.2f} ms/step)")
    print(f"cache build {build_s * 1e3:.1f} ms = {build_s * 1e3 / (online_ms - cached_ms):.2f} epochs' saving"
          if online_ms > cached_ms else f"cache build {build_s * 1e3:.1f} ms (no saving per epoch)")
    print(f"per-round ratios: median {statistics.median(round_ratios):.3f}, min {min(round_ratios):.3f}, "
          f"max {max(round_ratios):.3f}")
    print(f"ratio cached/online (median epoch): {ratio:.3f}  (target ≤ {TARGET}: {verdict})")

    result = {
        "benchmark": "teacher_cache",
        "date": started,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": versions(),
        "load_average": {"start": load_start, "end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "macs_per_sample": {"teacher": teacher_macs, "student": student_macs, "ratio": mac_ratio},
        "cache": {"build_ms": build_s * 1e3, "build_teacher_forwards": build_calls, "load_ms": load_s * 1e3,
                  "bytes": cache_bytes, "samples": len(train)},
        "steps_per_epoch": steps,
        "warmup_max_relative_loss_difference": max_rel,
        "cached": {"median_epoch_ms": cached_ms, "epoch_ms": [t * 1e3 for t in times["cached"]],
                   "teacher_forwards_per_epoch": teacher_calls["cached"]},
        "online": {"median_epoch_ms": online_ms, "epoch_ms": [t * 1e3 for t in times["online"]],
                   "teacher_forwards_per_epoch": teacher_calls["online"]},
        "ratio": ratio,
        "per_round_ratios": round_ratios,
        "target": TARGET,
        "target_holds": ratio <= TARGET,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
