"""Edge quantization: ORT FP32 vs dynamic INT8 vs static INT8 vs selective mixed precision on trained students.

What is measured
    A convolutional student (``cnn-wide``: four 3x3 convs, 64-128 channels) and a linear one (``mlp-wide``:
    three 1024-wide Linear layers) are trained briefly on the real 8x8 sklearn digits, exported with the dynamo
    exporter, and made into: dynamic INT8 (``quantize_dynamic``; Linear layers only, ORT's ``ConvInteger`` is
    slower than FP32), static INT8 (QDQ, per-channel weights, 128 calibration images from the train split) and
    mixed precision (the ``--k`` layers most sensitive to INT8, by per-layer output SQNR, kept in FP32).
    All four run through ONNX Runtime on the CPU, timed interleaved in one run (``kd_edge.latency.benchmark``)
    at batch 1 and 32; accuracy is on 500 held-out test digits.

Targets (issue #5)
    static INT8 >= 2x faster than ORT FP32 (p50) with <= 1 point accuracy drop, on both students; mixed
    precision recovers >= half of the all-INT8 accuracy loss for <= 20% of its latency gain (judged only when
    INT8 loses accuracy at all).

Run ``python tools/bench/edge_quantization.py --help``; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import versions
from kd_edge.export import export_onnx, onnx_session, run_onnx
from kd_edge.latency import benchmark, rows_to_json
from kd_edge.models.small import build_model, demo_data, train_classifier
from kd_edge.quantize import quantize_dynamic_int8, quantize_static_int8
from kd_edge.sensitivity import layer_sensitivity, mixed_precision

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "edge_quantization.json"
EPOCHS = {"cnn-wide": 12, "mlp-wide": 8}


def cpu_flags() -> list[str]:
    """The INT8-relevant instruction sets this CPU reports (VNNI decides ORT's INT8 speed on x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"})


def one_student(name: str, args: argparse.Namespace, data: Any, work: Path) -> dict[str, Any]:
    """Train, export, quantize, rank, time and score one student."""
    start = time.perf_counter()
    model = train_classifier(build_model(name, seed=args.seed), data.train_x, data.train_y, epochs=EPOCHS[name],
                             seed=args.seed)
    train_s = time.perf_counter() - start
    fp32 = export_onnx(model, data.test_x[:2], work / f"{name}.onnx").path
    paths = {"ort-fp32": fp32,
             "ort-int8-dynamic": quantize_dynamic_int8(fp32, work / f"{name}.dyn.onnx").path,
             "ort-int8-static": quantize_static_int8(fp32, work / f"{name}.int8.onnx", data.calib_x).path}
    ranking = layer_sensitivity(fp32, data.calib_x, data.test_x, data.test_y)
    paths[f"ort-mixed-k{args.k}"] = mixed_precision(fp32, ranking, args.k, work / f"{name}.mixed.onnx",
                                                    data.calib_x).path
    accuracy = {key: float((run_onnx(onnx_session(path), data.test_x).argmax(1) == data.test_y.numpy()).mean())
                for key, path in paths.items()}
    rows = benchmark(paths, tuple(data.test_x.shape[1:]), batch_sizes=args.batch_sizes, threads=[args.threads],
                     warmup=args.warmup, iterations=args.iterations, seed=args.seed)
    p50 = {(r.name, r.batch_size): r.p50_ms for r in rows}
    mixed = f"ort-mixed-k{args.k}"
    verdicts = {}
    for batch in args.batch_sizes:
        speedup = p50[("ort-fp32", batch)] / p50[("ort-int8-static", batch)]
        gain = p50[("ort-fp32", batch)] - p50[("ort-int8-static", batch)]
        given_back = (p50[(mixed, batch)] - p50[("ort-int8-static", batch)]) / gain if gain > 0 else None
        verdicts[f"batch{batch}"] = {"int8_speedup": speedup, "dynamic_speedup":
                                     p50[("ort-fp32", batch)] / p50[("ort-int8-dynamic", batch)],
                                     "mixed_speedup": p50[("ort-fp32", batch)] / p50[(mixed, batch)],
                                     "mixed_share_of_int8_gain_given_back": given_back,
                                     "int8_2x": speedup >= 2.0}
    loss = accuracy["ort-fp32"] - accuracy["ort-int8-static"]
    recovered = (accuracy[mixed] - accuracy["ort-int8-static"]) / loss if loss > 0 else None
    return {"model": name, "train_epochs": EPOCHS[name], "train_s": train_s, "accuracy": accuracy,
            "int8_accuracy_drop_pts": 100 * loss, "int8_within_1pt": loss <= 0.01,
            "mixed_recovered_share_of_int8_loss": recovered, "kept_in_fp32": ranking.ranking[:args.k],
            "sensitivity": ranking.to_dict(), "verdicts": verdicts, "latency": rows_to_json(rows),
            "sizes": {key: os.path.getsize(path) for key, path in paths.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (and torch threads)")
    parser.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[1, 32])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--k", type=int, default=1, help="layers kept in FP32 in the mixed-precision model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = demo_data(calibration_size=128, test_size=500, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as work:
        students = [one_student(name, args, data, Path(work)) for name in ("cnn-wide", "mlp-wide")]
    result = {"settings": vars(args) | {"json": str(args.json)}, "cpu_flags": cpu_flags(), "versions": versions(),
              "load_average": os.getloadavg(), "data": data.source, "students": students}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))
    print(f"CPU INT8 flags: {', '.join(result['cpu_flags']) or 'none'}; threads {args.threads}")
    for s in students:
        acc = {k: f"{100 * v:.2f}" for k, v in s["accuracy"].items()}
        print(f"\n{s['model']} (test accuracy %: {acc}; kept in FP32: {s['kept_in_fp32']})")
        for batch in args.batch_sizes:
            row = {r["name"]: r["p50_ms"] for r in s["latency"] if r["batch_size"] == batch}
            v = s["verdicts"][f"batch{batch}"]
            print(f"  batch {batch:3d}: p50 ms " + ", ".join(f"{k} {t:.4f}" for k, t in row.items())
                  + f" | static INT8 {v['int8_speedup']:.2f}x, dynamic {v['dynamic_speedup']:.2f}x, "
                    f"mixed {v['mixed_speedup']:.2f}x")
        print(f"  INT8 accuracy drop {s['int8_accuracy_drop_pts']:+.2f} pts; mixed recovers "
              f"{s['mixed_recovered_share_of_int8_loss']}")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
