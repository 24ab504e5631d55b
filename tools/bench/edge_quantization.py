"""Edge quantization: ORT FP32 vs dynamic INT8 vs static INT8 vs selective mixed precision on trained students.

What is measured
    A convolutional student (``cnn-wide``: four 3x3 convs, 64-128 channels) and a linear one (``mlp-wide``:
    three 1024-wide Linear layers) are trained briefly on the real 8x8 sklearn digits, exported with the dynamo
    exporter, and made into: dynamic INT8 (``quantize_dynamic``; Linear layers only, ORT's ``ConvInteger`` is
    slower than FP32), static INT8 (QDQ, per-channel weights, 128 calibration images from the train split) and
    mixed precision (the ``--ks`` layers most sensitive to INT8, by per-layer output SQNR, kept in FP32).
    All run through ONNX Runtime on the CPU, timed interleaved in one run (``kd_edge.latency.benchmark``) at
    batch 1 and 32; accuracy is on 500 held-out test digits.

Students where INT8 costs accuracy (for the mixed-precision target)
    The plain students lose nothing to INT8, so the mixed-precision target needs a model that does. The trained
    ``cnn-wide`` is given one *activation outlier channel*: the most active output channel of a conv is scaled
    up by ``s`` (weights and bias) and the next layer's input weights for that channel down by ``s``. ReLU, max
    and average pooling are positively homogeneous, so the FP32 function is unchanged (checked), but that
    channel's peak becomes ``--outlier-ratio`` times the median channel's peak. One shared UINT8 range for that
    tensor then leaves the other channels a handful of levels. This is the range imbalance that trained networks
    really show: transformer activations carry a few channels one to two orders of magnitude larger than the
    rest (Bondarenko et al., EMNLP 2021; Dettmers et al., LLM.int8(), NeurIPS 2022), and BN folding gives
    MobileNets per-channel ranges differing by 100x or more (Nagel et al., Data-Free Quantization, ICCV 2019).
    ORT's QDQ quantizer quantizes a Conv's output as well as its input, so the layer that INT8 hurts is the
    outlier's producer. The outlier is planted after conv1 (a cheap layer, 0.4% of the MACs), conv2 (50%) and
    conv4 (25%): what mixed precision costs depends on how heavy the fragile layer is.

Targets (issue #5)
    static INT8 >= 2x faster than ORT FP32 (p50) with <= 1 point accuracy drop, on both plain students; mixed
    precision recovers >= half of the all-INT8 accuracy loss for <= 20% of its latency gain (judged where INT8
    loses accuracy at all).

Run ``python tools/bench/edge_quantization.py --help``; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import versions
from kd_edge.data.digits import demo_data, train_classifier
from kd_edge.export import export_onnx, onnx_session, run_onnx
from kd_edge.latency import benchmark, rows_to_json
from kd_edge.models.small import build_model
from kd_edge.quantize import quantize_dynamic_int8, quantize_static_int8
from kd_edge.sensitivity import layer_sensitivity, mixed_precision
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "edge_quantization.json"
EPOCHS = {"cnn-wide": 12, "mlp-wide": 8}
#: label -> (trained base model, producer of the outlier channel, its consumer). ORT's QDQ quantizer also
#: quantizes a Conv's own (pre-ReLU) output, so the fragile layer is usually the *producer*: conv1 (0.4% of the
#: MACs), conv2 (50%) or conv4 (25%) here.
OUTLIERS = {"cnn-wide+outlier@conv1": ("cnn-wide", "features.0", "features.2"),
            "cnn-wide+outlier@conv2": ("cnn-wide", "features.2", "features.5"),
            "cnn-wide+outlier@conv4": ("cnn-wide", "features.7", "head")}


def cpu_flags() -> list[str]:
    """The INT8-relevant instruction sets this CPU reports (VNNI decides ORT's INT8 speed on x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"})


def plant_outlier(model: nn.Module, producer: str, consumer: str, ratio: float, calib_x: torch.Tensor
                  ) -> dict[str, Any]:
    """Scale the most active output channel of ``producer`` (after ReLU, on ``calib_x``) so that its peak is
    ``ratio`` times the median channel's peak, and divide ``consumer``'s input weights for it by the same factor
    (in place; the FP32 function is unchanged up to rounding). Returns what was done."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hook = modules[producer].register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
    with torch.no_grad():
        before = model(calib_x)
    hook.remove()
    out = seen["out"].relu()
    peaks = out.amax(dim=[0, *range(2, out.dim())])
    channel = int(peaks.argmax())
    scale = float(ratio * peaks.median() / peaks[channel])
    with torch.no_grad():
        modules[producer].weight[channel] *= scale
        modules[producer].bias[channel] *= scale
        modules[consumer].weight[:, channel] /= scale
        change = float((model(calib_x) - before).abs().max())
    return {"producer": producer, "consumer": consumer, "channel": channel, "scale": scale, "ratio": ratio,
            "peak_before": float(peaks[channel]), "median_peak": float(peaks.median()),
            "fp32_max_abs_change": change}


def one_student(name: str, model: nn.Module, args: argparse.Namespace, data: Any, work: Path,
                train_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export, quantize, rank, time and score one trained student."""
    stem = name.replace("@", "-").replace("+", "-")
    fp32 = export_onnx(model, data.test_x[:2], work / f"{stem}.onnx").path
    paths = {"ort-fp32": fp32,
             "ort-int8-dynamic": quantize_dynamic_int8(fp32, work / f"{stem}.dyn.onnx").path,
             "ort-int8-static": quantize_static_int8(fp32, work / f"{stem}.int8.onnx", data.calib_x).path}
    ranking = layer_sensitivity(fp32, data.calib_x, data.test_x, data.test_y)
    for k in args.ks:
        paths[f"ort-mixed-k{k}"] = mixed_precision(fp32, ranking, k, work / f"{stem}.mixed{k}.onnx",
                                                   data.calib_x, keep="fp32").path  # as recorded in the docs
    accuracy = {key: float((run_onnx(onnx_session(path), data.test_x).argmax(1) == data.test_y.numpy()).mean())
                for key, path in paths.items()}
    rows = benchmark(paths, tuple(data.test_x.shape[1:]), batch_sizes=args.batch_sizes, threads=[args.threads],
                     warmup=args.warmup, iterations=args.iterations, seed=args.seed)
    p50 = {(r.name, r.batch_size): r.p50_ms for r in rows}
    loss = accuracy["ort-fp32"] - accuracy["ort-int8-static"]
    verdicts = {}
    for batch in args.batch_sizes:
        fp32_ms, int8_ms = p50[("ort-fp32", batch)], p50[("ort-int8-static", batch)]
        gain = fp32_ms - int8_ms
        verdict: dict[str, Any] = {"int8_speedup": fp32_ms / int8_ms,
                                   "dynamic_speedup": fp32_ms / p50[("ort-int8-dynamic", batch)],
                                   "int8_2x": fp32_ms / int8_ms >= 2.0}
        for k in args.ks:
            mixed_ms = p50[(f"ort-mixed-k{k}", batch)]
            given_back = (mixed_ms - int8_ms) / gain if gain > 0 else None
            recovered = (accuracy[f"ort-mixed-k{k}"] - accuracy["ort-int8-static"]) / loss if loss > 0 else None
            verdict[f"k{k}"] = {"speedup": fp32_ms / mixed_ms, "share_of_int8_gain_given_back": given_back,
                                "recovered_share_of_int8_loss": recovered,
                                "target_met": None if recovered is None or given_back is None
                                else recovered >= 0.5 and given_back <= 0.2}
        verdicts[f"batch{batch}"] = verdict
    return {"model": name, "train_s": train_s, "accuracy": accuracy, "int8_accuracy_drop_pts": 100 * loss,
            "int8_within_1pt": loss <= 0.01, "kept_in_fp32": {k: ranking.ranking[:k] for k in args.ks},
            "sensitivity": ranking.to_dict(), "verdicts": verdicts, "latency": rows_to_json(rows),
            "sizes": {key: os.path.getsize(path) for key, path in paths.items()}, **(extra or {})}


def students(args: argparse.Namespace, data: Any, work: Path) -> list[dict[str, Any]]:
    """The plain students, then the trained CNN with a planted outlier channel in each place of ``OUTLIERS``."""
    trained, out = {}, []
    for name in ("cnn-wide", "mlp-wide"):
        start = time.perf_counter()
        trained[name] = train_classifier(build_model(name, seed=args.seed), data.train_x, data.train_y,
                                         epochs=EPOCHS[name], seed=args.seed)
        seconds = time.perf_counter() - start
        out.append(one_student(name, trained[name], args, data, work, seconds, {"train_epochs": EPOCHS[name]}))
    for label, (base, producer, consumer) in OUTLIERS.items():
        model = copy.deepcopy(trained[base])
        planted = plant_outlier(model, producer, consumer, args.outlier_ratio, data.calib_x)
        out.append(one_student(label, model, args, data, work, 0.0,
                               {"train_epochs": EPOCHS[base], "outlier": planted}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (and torch threads)")
    parser.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[1, 32])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--ks", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2],
                        help="mixed precision: numbers of most sensitive layers kept in FP32, e.g. 1,2")
    parser.add_argument("--outlier-ratio", type=float, default=200.0,
                        help="planted outlier channel: its peak over the median channel's peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = demo_data(calibration_size=128, test_size=500, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as work:
        made = students(args, data, Path(work))
    result = {"settings": vars(args) | {"json": str(args.json)}, "cpu_flags": cpu_flags(), "versions": versions(),
              "load_average": os.getloadavg(), "data": data.source, "students": made}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))
    print(f"CPU INT8 flags: {', '.join(result['cpu_flags']) or 'none'}; threads {args.threads}")
    for s in made:
        acc = {k: f"{100 * v:.2f}" for k, v in s["accuracy"].items()}
        print(f"\n{s['model']} (test accuracy %: {acc}; kept in FP32: {s['kept_in_fp32']})")
        if "outlier" in s:
            o = s["outlier"]
            print(f"  outlier: channel {o['channel']} of {o['producer']} x{o['scale']:.1f} (peak {o['ratio']:g}x the "
                  f"median channel's), FP32 output change {o['fp32_max_abs_change']:.2g}")
        for batch in args.batch_sizes:
            row = {r["name"]: r["p50_ms"] for r in s["latency"] if r["batch_size"] == batch}
            v = s["verdicts"][f"batch{batch}"]
            mixed = ", ".join(f"mixed k={k} {v[f'k{k}']['speedup']:.2f}x (gives back "
                              f"{_percent(v[f'k{k}']['share_of_int8_gain_given_back'])} of the INT8 gain)"
                              for k in args.ks)
            print(f"  batch {batch:3d}: p50 ms " + ", ".join(f"{k} {t:.4f}" for k, t in row.items())
                  + f" | static INT8 {v['int8_speedup']:.2f}x, dynamic {v['dynamic_speedup']:.2f}x, {mixed}")
        first = s["verdicts"][f"batch{args.batch_sizes[0]}"]
        print(f"  INT8 accuracy drop {s['int8_accuracy_drop_pts']:+.2f} pts; mixed recovers "
              + ", ".join(f"k={k}: {_percent(first[f'k{k}']['recovered_share_of_int8_loss'])}" for k in args.ks))
    print(f"\nwrote {args.json}")
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


if __name__ == "__main__":
    raise SystemExit(main())
