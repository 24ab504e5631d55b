"""Instructions per training step under valgrind: kd against the hand-written loop and torchdistill.

Why
    Wall-clock step times on a shared virtual machine swing by ±10 % from one run to the next (see the
    per-round spread in ``vs_torchdistill.py``), more than the 3 % target between kd and a hand-written
    loop. The number of instructions a step executes does not swing: it is a property of the code.

How
    For each side (``kd``, ``hand``, ``torchdistill``, exactly the loops of ``vs_torchdistill.py``: same
    teacher, student, batches and Hinton KD) this script runs a child process under
    ``valgrind --tool=callgrind --cache-sim=no`` twice, training one epoch of ``--steps`` S1 and S2 steps,
    and reads the instructions it executed. ``(I(S2) − I(S1)) / (S2 − S1)`` is the side's instructions per
    step: everything outside the steps (imports, model building, kd's run directory and end-of-fit
    checkpoint) cancels out. One thread and ``PYTHONHASHSEED=0``, so counts repeat to well under 0.1 %.

What it does not measure
    Time. Cache misses, memory stalls and the allocator's page faults cost cycles that no instruction
    count shows, so read the ratio next to the wall-clock ratios, as the floor of kd's overhead that its
    own code causes. Needs valgrind (``apt-get install valgrind``); each child takes 2–3 minutes.

Targets (as ``vs_torchdistill.py``): kd/hand ≤ 1.03 and kd/torchdistill ≤ 1.00.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "instructions.json"
SIDES = ("kd", "hand", "torchdistill")
TARGET_HAND, TARGET_TORCHDISTILL = 1.03, 1.00
COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def child(side: str, steps: int, batch_size: int, seed: int) -> None:
    """Train one epoch of ``steps`` steps on ``side`` (run under valgrind by the parent)."""
    import torch
    from bench_common import mlp
    from kd_core.runs import RunDir
    from kd_core.testing import BlobDataset
    from vs_torchdistill import run_side

    torch.set_num_threads(1)
    # kd writes metrics.jsonl once a second; valgrind runs ~50x slower, so a timed write would come every few
    # steps and make the count depend on the machine's speed. Written at fit end instead: every record's
    # encoding is still counted (the write system calls never are: valgrind counts user-space instructions).
    RunDir.FLUSH_SECONDS = float("inf")
    train = BlobDataset(size=batch_size * steps, features=128, classes=10, seed=seed)
    teacher = mlp([128, 512, 512, 10], seed=seed + 1).eval()
    student = mlp([128, 256, 256, 10], seed=seed + 2)
    args = argparse.Namespace(epochs=1, lr=1e-3, batch_size=batch_size, device="cpu")
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        gaps, _ = run_side(side, student, teacher, train, args, seed, 1, torch.device("cpu"), Path(tmp))
    if len(gaps) != steps - 1:
        raise SystemExit(f"{side}: {len(gaps) + 1} steps ran, expected {steps}")


def count(side: str, steps: int, args: argparse.Namespace, work: Path) -> int:
    """Instructions executed by one child run under callgrind."""
    out = work / f"callgrind.{side}.{steps}"
    command = ["valgrind", "--tool=callgrind", "--cache-sim=no", f"--callgrind-out-file={out}", sys.executable,
               str(Path(__file__).resolve()), "--child", side, str(steps), "--batch-size", str(args.batch_size),
               "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE)
    match = COLLECTED.search(result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"{side} with {steps} steps failed under valgrind (exit {result.returncode}):\n"
                         f"{result.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return int(match.group(1).replace(",", ""))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line settings (``--help`` lists them with defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, nargs=2, default=[10, 50], metavar=("S1", "S2"),
                        help="steps of the short and the long run (S2 > S1 ≥ 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="children under valgrind at once")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s1, s2 = args.steps
    if not 2 <= s1 < s2:
        parser.error(f"--steps: expected S2 > S1 ≥ 2, got {s1} {s2}")
    if args.batch_size < 1 or args.jobs < 1:
        parser.error("--batch-size and --jobs must be ≥ 1")
    if "kd" not in args.sides or len(args.sides) < 2:
        parser.error("--sides: kd and at least one other side")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Count every side at both step counts, print the ratios and write the JSON."""
    args = parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.batch_size, args.seed)
        return None
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions.py needs valgrind on PATH (Debian: apt-get install valgrind)")
    from bench_common import versions

    s1, s2 = args.steps
    started, start, load_start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter(), os.getloadavg()
    jobs = [(side, steps) for side in args.sides for steps in (s1, s2)]
    print(f"{len(jobs)} runs under callgrind, {args.jobs} at a time (2–3 min each)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kd-callgrind-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(*job, args, Path(tmp)), jobs), strict=True))
    per_step = {side: (counts[(side, s2)] - counts[(side, s1)]) / (s2 - s1) for side in args.sides}
    ratios = {f"kd/{side}": per_step["kd"] / per_step[side] for side in args.sides if side != "kd"}
    targets = {"kd/hand": TARGET_HAND, "kd/torchdistill": TARGET_TORCHDISTILL}
    holds = {name: ratio <= targets[name] for name, ratio in ratios.items()}
    for side in args.sides:
        print(f"{side:12s} {per_step[side] / 1e6:8.3f} M instructions per step "
              f"({counts[(side, s1)]:,} at {s1} steps, {counts[(side, s2)]:,} at {s2})")
    for name, ratio in ratios.items():
        print(f"{name} {ratio:.4f} (target ≤ {targets[name]}: {'holds' if holds[name] else 'MISSED'})")
    env = versions() | {"torch_threads": 1, "valgrind": _valgrind_version()}
    result = {"benchmark": "instructions", "date": started, "minutes": (time.perf_counter() - start) / 60,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                           if k != "child"} | {"device": "cpu", "clock": "instructions"},
              "environment": env, "load_average": {"start": load_start, "end": os.getloadavg()},
              "counts": {f"{side}@{steps}": n for (side, steps), n in counts.items()},
              "instructions_per_step": per_step, "ratios": ratios, "targets": targets, "target_holds": holds}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return result


def _valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
