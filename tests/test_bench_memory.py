"""The CPU peak-memory reading of the benchmarks (``tools/bench/bench_common.PeakTensorMemory``)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))

from bench_common import PeakTensorMemory  # tools/bench, put on the path just above

MIB = 2**20 // 4  # float32 elements in one MiB


def test_peak_counts_what_is_live_at_once_above_the_start():
    before = torch.ones(8 * MIB)  # live before the block: not counted
    with PeakTensorMemory() as peak:
        a = torch.empty(4 * MIB)
        b = torch.empty(2 * MIB)
        del a  # 6 MiB were live together; the next 4 MiB reuse what a freed
        c = torch.empty(4 * MIB)
        del b, c
    assert peak.mib == 6.0
    assert before.numel() == 8 * MIB


def test_in_place_work_on_a_tensor_from_before_reads_near_zero():
    kept = torch.ones(MIB)
    with PeakTensorMemory() as peak:
        kept.mul_(2.0)  # in place: at most the scalar's few bytes
    assert peak.mib < 1 / 1024
