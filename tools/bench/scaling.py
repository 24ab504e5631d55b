"""Scaling: ``Distiller`` epoch time and peak memory as the dataset grows (1×, 4×, 16×), teacher cache off and on.

What is measured
    One-epoch ``Distiller.fit`` runs of Hinton KD (the objective and MLPs of ``teacher_cache.py``) on
    ``BlobDataset``s of ``--base`` × 1, 4 and 16 samples, each against an online ``FrozenTeacher``
    ("cache off") and a ``CachedTeacher`` built beforehand for that dataset ("cache on"). Per run: the
    epoch's wall time (``teacher_cache.EpochClock``: from the phase start to the epoch end) and its peak
    memory above the start: on CUDA the allocator's peak in the timed epochs (``bench_common.PeakMemory``);
    on the CPU the peak of live tensor bytes (``bench_common.PeakTensorMemory``, the torch profiler's memory
    events) in one extra, untimed epoch per pair after the timed rounds.

How
    Each round runs every (size, cache) pair once, in an order that rotates from round to round, after
    a warm-up round. Reported per pair: the median epoch time, the time per sample (epoch time / size)
    and the median peak memory. Expected: time linear in the size (time per sample at 16× within 15 %
    of that at 1×) and memory flat (peak at 16× at most 10 % or 8 MiB above that at 1×, whichever is
    larger: a run streams batches, so only the cache's own table, 40 bytes per sample here, may grow).

Run ``python tools/bench/scaling.py --help`` for the settings; results go to ``--json``.
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
from bench_common import PeakMemory, PeakTensorMemory, bench_parser, check_args, mlp, use_clock, versions
from kd_core import Backend, CachedTeacher, FrozenTeacher
from kd_core.data import IndexedDataset, in_order
from kd_core.signals import Signal, default_forward
from kd_core.taps import LOGITS
from kd_core.testing import BlobDataset
from teacher_cache import ForwardCounter, one_epoch
from torch.utils.data import DataLoader, default_collate

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "scaling.json"
FACTORS = (1, 4, 16)
TIME_TOLERANCE, MEMORY_TOLERANCE, MEMORY_SLACK_MIB = 0.15, 0.10, 8.0


def build_cache(teacher: torch.nn.Module, data: BlobDataset, folder: Path, args: argparse.Namespace,
                device: torch.device) -> CachedTeacher:
    """Build a ``CachedTeacher`` for ``data`` in ``folder`` (outside every timed epoch) and return it."""
    cached = CachedTeacher(FrozenTeacher(teacher), folder)
    cached.bind([LOGITS], default_forward)
    indexed = IndexedDataset(data)
    loader = DataLoader(indexed, batch_sampler=in_order(len(indexed), args.cache_batch_size),
                        collate_fn=default_collate)
    cached.build({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in loader)
    return cached


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line settings (``--help`` lists them with defaults)."""
    parser = bench_parser(__doc__, "128,1024,1024,10", DEFAULT_JSON)
    parser.add_argument("--base", type=int, default=1280, help="samples at 1× (batches of --batch-size)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each: every size, cache off and on)")
    parser.add_argument("--cache-batch-size", type=int, default=256, help="batch size of the cache build")
    args = parser.parse_args(argv)
    check_args(parser, args, ("threads", "batch_size", "base", "rounds", "cache_batch_size"))
    return args


def verdicts(table: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Is time linear and memory flat, for cache off and on?"""
    out: dict[str, Any] = {}
    for cache in ("off", "on"):
        small, large = table[f"1x-{cache}"], table[f"{FACTORS[-1]}x-{cache}"]
        per_sample = large["us_per_sample"] / small["us_per_sample"]
        growth = large["peak_mib"] - small["peak_mib"]
        allowed = max(MEMORY_TOLERANCE * abs(small["peak_mib"]), MEMORY_SLACK_MIB)
        out[cache] = {"per_sample_time_ratio_16x_1x": per_sample,
                      "time_linear": abs(per_sample - 1) <= TIME_TOLERANCE,
                      "peak_growth_16x_mib": growth, "memory_flat": growth <= allowed}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every size with the cache off and on, print the table and write the JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_clock(args.clock)
    device = Backend(device=args.device, distributed="none").device
    teacher = mlp(args.teacher, seed=args.seed + 1).to(device).eval()
    counter = ForwardCounter(teacher)
    initial = mlp(args.student, seed=args.seed + 2)
    data = {f: BlobDataset(size=args.base * f, features=args.teacher[0], classes=args.teacher[-1], seed=args.seed)
            for f in FACTORS}
    started, load_start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getloadavg()
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, sizes "
          f"{[args.base * f for f in FACTORS]}, {args.rounds} rounds; teacher {args.teacher}, student {args.student}")
    times: dict[str, list[float]] = {}
    peaks: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        work = Path(tmp)
        signals: dict[str, Signal] = {}
        for f in FACTORS:
            signals[f"{f}x-off"] = FrozenTeacher(teacher)
            signals[f"{f}x-on"] = build_cache(teacher, data[f], work / f"cache-{f}x", args, device)
        pairs = list(signals)
        students = {pair: copy.deepcopy(initial) for pair in pairs}
        for r in range(args.rounds + 1):  # round 0 is the warm-up
            for i in range(len(pairs)):
                pair = pairs[(i + r) % len(pairs)]
                size = data[int(pair.split("x")[0])]
                with PeakMemory(device) as peak:
                    clock = one_epoch(students[pair], signals[pair], size, args, args.seed + r,
                                      work / f"r{r}-{pair}", device, counter)
                if pair.endswith("-on") and clock.teacher_calls:
                    raise SystemExit(f"{pair}: a cached epoch ran the teacher {clock.teacher_calls} times")
                if r:
                    times.setdefault(pair, []).append(clock.seconds)
                    peaks.setdefault(pair, []).append(peak.mib)
            if r:
                print(f"round {r}/{args.rounds}: " + "  ".join(f"{p} {times[p][-1] * 1e3:.0f} ms" for p in pairs))
        if device.type == "cpu":  # no allocator statistics: count tensor bytes, in untimed epochs
            for pair in pairs:
                size = data[int(pair.split("x")[0])]
                with PeakTensorMemory() as peak:
                    one_epoch(students[pair], signals[pair], size, args, args.seed, work / f"memory-{pair}", device,
                              counter)
                peaks[pair] = [peak.mib]
    table = {p: {"samples": len(data[int(p.split('x')[0])]), "epoch_ms": statistics.median(times[p]) * 1e3,
                 "us_per_sample": statistics.median(times[p]) * 1e6 / len(data[int(p.split('x')[0])]),
                 "peak_mib": statistics.median(peaks[p])} for p in pairs}
    checks = verdicts(table)
    print()
    for p, row in table.items():
        print(f"{p:7s} {row['samples']:6d} samples  {row['epoch_ms']:9.1f} ms/epoch  {row['us_per_sample']:7.2f} "
              f"µs/sample  peak +{row['peak_mib']:.1f} MiB")
    for cache, c in checks.items():
        print(f"cache {cache}: time/sample 16×/1× {c['per_sample_time_ratio_16x_1x']:.3f} "
              f"(linear: {c['time_linear']}); "
              f"peak growth 16× vs 1× {c['peak_growth_16x_mib']:+.1f} MiB (flat: {c['memory_flat']})")
    result = {"benchmark": "scaling", "date": started,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "environment": versions(), "load_average": {"start": load_start, "end": os.getloadavg()},
              "memory_method": "cuda allocator peak" if device.type == "cuda" else
              "tensor bytes (torch profiler memory events, one untimed epoch per setting)",
              "table": table, "per_round_ms": {p: [t * 1e3 for t in v] for p, v in times.items()},
              "per_round_peak_mib": peaks, "checks": checks}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
