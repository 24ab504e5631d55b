"""Compact Wav2Lip: parameters, MACs and CPU latency of the teacher generator and the compact student, and the
quality the student keeps (from a ``wav2lip-compact`` study's ``results.json``).

Kim et al., "A Unified Compression Framework for Efficient Speech-Driven Talking-Face Generation",
arXiv:2304.00471: Wav2Lip with every residual block removed and every width divided by 4 has 28× fewer
parameters and MACs (36.3 M -> 1.26 M parameters).

What is measured
    ``kd_generative.talking.generator.build_generator(size)`` (the teacher: face widths 16 ... 512 at 96 px,
    audio width 32, two residual blocks per stage) against ``build_generator(size, compact=True)`` (no residual
    blocks, widths / 4), for one frame (a 6-channel face and a 1×80×16 mel window). Parameters by
    ``kd_core.metrics.count_parameters``; MACs by ``kd_core.metrics.count_macs`` (torch's ``FlopCounterMode``,
    FLOPs // 2: convolutions, transposed convolutions and matmuls; norms and activations are not counted, which
    is why the MAC ratio exceeds the parameter ratio: the removed residual blocks run at high resolution); CPU
    latency p50 at batch 1 by ``kd_core.metrics.measure_latency``.

Quality
    With ``--results PATH`` (a study's ``results.json``): the teacher's and each arm's test PSNR / SSIM of the
    lower half and PSNR of the mouth box, the trivial baseline's (copying the reference frame), the student's
    PSNR and L1 against the teacher's frames, the expert's sync probability and LSE-D /
    LSE-C (mean over seeds), and the ratios of the run's own teacher and student.

Target: >= 28× fewer parameters and >= 28× fewer MACs at 96 px. Results go to ``--json``.

    .venv/bin/python tools/bench/wav2lip_compact.py [--sizes 96 48] [--results runs/.../results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from bench_common import versions
from kd_core.metrics import count_macs, count_parameters, measure_latency
from kd_generative.methods.wav2lip_report import QUALITY
from kd_generative.talking.generator import build_generator

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "wav2lip_compact.json"
TARGET = 28.0
COUNTER = ("kd_core.metrics.count_macs (torch FlopCounterMode, FLOPs // 2: conv, transposed conv, matmul; "
           "norms and activations not counted), one frame")


def costs(size: int, latency_iterations: int) -> dict[str, Any]:
    """Parameters, MACs (and latency) of the teacher and the compact student at ``size`` px, and the ratios."""
    torch.manual_seed(0)
    models = {"teacher": build_generator(size).eval(), "student": build_generator(size, compact=True).eval()}
    inputs = (torch.rand(1, 6, size, size), torch.randn(1, 1, 80, 16))
    out: dict[str, Any] = {"size": size}
    for name, model in models.items():
        out[f"{name}_params"] = count_parameters(model)
        out[f"{name}_macs"] = count_macs(model, *inputs)
        if latency_iterations > 0:
            out[f"{name}_latency_ms_p50"] = measure_latency(model, *inputs, warmup=3,
                                                            iterations=latency_iterations).p50_ms
    out["params_ratio"] = out["teacher_params"] / out["student_params"]
    out["macs_ratio"] = out["teacher_macs"] / out["student_macs"]
    if latency_iterations > 0:
        out["latency_ratio"] = out["teacher_latency_ms_p50"] / out["student_latency_ms_p50"]
    out["meets_target"] = out["params_ratio"] >= TARGET and out["macs_ratio"] >= TARGET
    return out


def quality(results_path: Path) -> dict[str, Any]:
    """The teacher's and each arm's test metrics (mean over seeds) from a study's ``results.json``."""
    results = json.loads(Path(results_path).read_text())
    out: dict[str, Any] = {"results": str(results_path)}
    if "teacher" in results:
        out["teacher"] = {m: results["teacher"]["test"][m] for m in QUALITY if m in results["teacher"]["test"]}
    out["arms"] = {}
    for name, arm in results["arms"].items():
        seeds = list(arm["seeds"].values())
        out["arms"][name] = {m: statistics.fmean(s[m] for s in seeds) for m in QUALITY if all(m in s for s in seeds)}
        out["arms"][name]["seeds"] = len(seeds)
    extra = results.get("wav2lip", {})
    if "costs" in extra:
        out["run_costs"] = extra["costs"]
    if "real_sync" in extra:
        out["real_frames"] = extra["real_sync"]
    if "reference_copy" in extra:
        out["reference_copy"] = extra["reference_copy"]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96], help="frame sides (3 * 2**k px)")
    parser.add_argument("--latency-iterations", type=int, default=10, help="timed forward passes (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--results", type=Path, default=None, help="a wav2lip-compact study's results.json")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the JSON; exit 1 when the 96 px ratios miss the target."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"counter": COUNTER, "target": TARGET, "sizes": [], "versions": versions()}
    for size in args.sizes:
        row = costs(size, args.latency_iterations)
        report["sizes"].append(row)
        latency = (f", latency p50 {row['teacher_latency_ms_p50']:.2f} -> {row['student_latency_ms_p50']:.2f} ms "
                   f"({row['latency_ratio']:.1f}x)" if "latency_ratio" in row else "")
        print(f"{size} px: params {row['teacher_params'] / 1e6:.2f} M -> {row['student_params'] / 1e6:.3f} M "
              f"({row['params_ratio']:.1f}x), MACs {row['teacher_macs'] / 1e9:.3f} G -> "
              f"{row['student_macs'] / 1e9:.4f} G ({row['macs_ratio']:.1f}x){latency}")
    if args.results is not None:
        report["quality"] = quality(args.results)
        print(json.dumps(report["quality"], indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"counter: {COUNTER}\nwritten: {args.json}")
    at96 = [r for r in report["sizes"] if r["size"] == 96]
    return 0 if all(r["meets_target"] for r in at96) else 1


if __name__ == "__main__":
    raise SystemExit(main())
