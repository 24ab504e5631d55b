"""What the benchmark scripts share: MLP builders, width parsing, device sync, the Hinton objective, versions,
peak memory.

Imported by the scripts beside it (run as ``python tools/bench/<script>.py``, which puts this folder on
``sys.path``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from kd_core import Objective, Term, cross_entropy, kl_divergence
from torch import nn

TEMPERATURE, KD_WEIGHT, CE_WEIGHT = 4.0, 0.9, 0.1


def mlp(widths: Sequence[int], seed: int) -> nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear`` over ``widths``, initialised from ``seed`` (global RNG untouched)."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    torch.set_rng_state(generator_state)
    return nn.Sequential(*layers)


def widths(text: str) -> list[int]:
    """Parse ``"128,512,512,10"`` (an argparse type)."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive widths, got {text!r}")
    return values


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def use_clock(name: str) -> None:
    """Read step times from ``name``: ``wall`` (elapsed time) or ``cpu`` (this process's CPU time, all threads).

    CPU time leaves out the time the process waits for a core, so it is the fairer clock on a machine that
    other jobs share (it still feels their cache and memory traffic); on a quiet machine use ``wall``.
    """
    global _clock
    if name not in CLOCKS:
        raise ValueError(f"clock: expected one of {sorted(CLOCKS)}, got {name!r}")
    _clock = CLOCKS[name]


def bench_now() -> float:
    """The chosen clock's reading in seconds (see ``use_clock``)."""
    return _clock()


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA only) so that the clock reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hinton_objective() -> Objective:
    """The objective both benchmarks run: 0.9·T²·KL + 0.1·CE at T = 4."""
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=KD_WEIGHT,
             temperature=TEMPERATURE, direction="forward"),
        Term("ce", cross_entropy, student="logits", target="label", weight=CE_WEIGHT),
    )


def versions() -> dict[str, Any]:
    """Python, torch, kd-core and platform details for the JSON."""
    try:
        kd_core_version = metadata.version("kd-core")
    except metadata.PackageNotFoundError:
        kd_core_version = None
    return {"python": sys.version.split()[0], "torch": torch.__version__, "kd_core": kd_core_version,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, positive: Sequence[str]) -> None:
    """Exit through ``parser.error`` unless teacher and student MLPs match at both ends and ``positive`` ≥ 1."""
    if args.teacher[-1] != args.student[-1] or args.teacher[0] != args.student[0]:
        parser.error("teacher and student need the same input width and the same number of classes")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1")


def bench_parser(doc: str | None, teacher: str, json_default: Path) -> argparse.ArgumentParser:
    """A parser with the options both benchmarks take: device, threads, MLP widths, batch, lr, seed, JSON path."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--teacher", type=widths, default=widths(teacher), help="teacher MLP widths")
    parser.add_argument("--student", type=widths, default=widths("128,256,256,10"), help="student MLP widths")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=json_default, help="where to write the results")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="step times from elapsed time (wall) or process CPU time (cpu: for shared machines, "
                             "with --threads 1)")
    return parser


class PeakMemory:
    """Peak memory of a block above its start, in MiB, from the CUDA allocator's statistics (cheap enough to
    wrap timed work). Other devices keep no such statistics: ``mib`` stays nan there (on the CPU, measure an
    untimed block with ``PeakTensorMemory``)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._start


class PeakTensorMemory:
    """Peak bytes of the tensors allocated inside a block (above what was live at its start), in MiB.

    Read from the torch profiler's memory events (every tensor allocation and free on the CPU, in order), so
    it works where no allocator keeps statistics, and sees memory that the C allocator reuses without the
    process growing (so the resident set would not show it). Profiling slows the block: time nothing
    inside it.
    """

    def __init__(self) -> None:
        self.mib = float("nan")

    def __enter__(self) -> PeakTensorMemory:
        from torch.profiler import ProfilerActivity, profile

        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._profile.__exit__(*exc)
        events = sorted((e.start_ns(), e.nbytes()) for e in self._profile.profiler.kineto_results.events()
                        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
        live = top = 0
        for _, size in events:  # allocations are positive, frees negative
            live += size
            top = max(top, live)
        self.mib = top / 2**20
