"""Selective FP16/INT8 precision on a trained compact generator (Kim et al., arXiv:2304.00471, MLSys'23 ODI).

What is measured
    A compact Pix2Pix U-Net student (``kd_generative.models.unet.build_unet``: depth 5, base width ``--base`` (64), no
    dropout; 32x32 px) is trained here for ``--epochs`` on kd-generative's grey -> colour pairs cut from real
    photos (``kd_generative.data.build_pairs("grey", 32)``) with an L1 loss (Pix2Pix without its discriminator),
    exported to ONNX through kd-edge, and made into:

    - ``fp32``: the exported model;
    - ``int8``: all-INT8, static (QDQ, per-channel weights, ``--calibration`` train images) on the ``--int8-ops``
      layers: ``kernels`` (default) quantizes the ops ONNX Runtime's CPU provider has integer kernels for (Conv;
      ``kd_edge.quantize.INT8_KERNEL_OPS``) and leaves the ConvTransposes in FP32, ``all`` quantizes those too;
    - ``mixed-kK-fp16``: the K layers most sensitive to INT8 kept in FP16, the rest INT8 (the paper's "MIX");
    - ``mixed-kK-fp32``: the same K layers kept in FP32 instead;
    - ``fp16-all``: the whole model in FP16 (``kd_edge.quantize.convert_fp16``), to show what ONNX Runtime's CPU
      provider does with FP16;
    - ``int8-all-ops`` (or ``int8-kernel-ops`` under ``--int8-ops all``): all-INT8 on the other choice of ops, to
      show what quantizing a ConvTranspose without an integer kernel costs.

    Per-layer sensitivity (``kd_edge.sensitivity.layer_sensitivity``): each compute layer alone in INT8, output
    SQNR against FP32 on the validation split (the test split is never used to choose). Quality on the test
    split: PSNR and SSIM to the colour target, PSNR to the FP32 model's output. Latency: all candidates through
    ONNX Runtime on the CPU, timed interleaved in one run (``kd_edge.latency.benchmark``), batch 1 (one frame)
    and ``--batch-sizes``. ``compute_precisions`` records which kernel types ORT really ran per candidate.

Planted outlier
    When plain INT8 does not visibly hurt the generator (test PSNR to the target drops < ``--visible-db``), a
    copy of it is given one *activation outlier channel*, as ``tools/bench/edge_quantization.py`` does: the most
    active output channel of the encoder at ``--outlier-level`` is scaled by ``s`` (its BatchNorm's weight and
    bias; the innermost encoder has no norm, so its Conv's) and every layer that reads it (the next encoder's
    Conv and the same level's decoder ConvTranspose, through the skip) divides its input weights for that
    channel by ``s``. LeakyReLU and ReLU are positively homogeneous, so the FP32 function is unchanged (checked),
    but the channel's peak becomes ``--outlier-ratio`` times the median channel's; one shared UINT8 range then
    leaves the other channels a few levels. Trained networks show such channels (Bondarenko et al., EMNLP 2021;
    Nagel et al., ICCV 2019). The target is judged on whichever model INT8 visibly hurts, and the output says so.

Target
    Selective precision recovers >= half of all-INT8's quality loss (test PSNR to the target) for <= 1/5 of
    all-INT8's latency gain over FP32 (batch 1 p50). Where all-INT8 is not faster than FP32 there is no gain to
    give back: the target is then not met, and the output says why. Where it saves less than ``--min-gain`` (10 %)
    of FP32's time, shares of that gain are within timing noise (a 32 px, base-16 U-Net measured 1.05x with mixed
    candidates "faster than all-INT8"): the latency half is then not judged. ``--base 64`` (Pix2Pix's own base
    width) gives the Conv layers enough work for INT8 to pay on an AVX2 CPU.

Run ``python tools/bench/generative_precision.py --help``; results go to ``--json``.
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

import numpy as np
import torch
from bench_common import versions
from kd_edge.export import export_onnx, onnx_session, parity, run_onnx
from kd_edge.latency import benchmark, rows_to_json
from kd_edge.quantize import INT8_OPS, compute_precisions, convert_fp16, quantize_static_int8
from kd_edge.sensitivity import layer_sensitivity, mixed_precision, sqnr_db
from kd_generative.data import build_pairs
from kd_generative.metrics import psnr, ssim
from kd_generative.models.unet import UNetGenerator, build_unet
from safetensors.torch import load_file, save_file
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "generative_precision.json"
INT8_FLAGS = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "f16c", "avx512_fp16"}


def cpu_flags() -> list[str]:
    """The INT8- and FP16-relevant instruction sets this CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f in INT8_FLAGS)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" where unreadable)."""
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return ""
    return line.split(":", 1)[1].strip()


def train_student(data: Any, args: argparse.Namespace) -> tuple[UNetGenerator, dict[str, Any]]:
    """The compact U-Net, trained with L1 to the colour target (Adam 2e-3, betas 0.5/0.999, batch 16)."""
    torch.manual_seed(args.seed)
    model = build_unet(in_channels=1, out_channels=3, depth=5, base=args.base, dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    x, y = data.train.inputs, data.train.targets
    generator = torch.Generator().manual_seed(args.seed)
    start, losses = time.perf_counter(), []
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for i in range(0, len(x), 16):
            batch = order[i:i + 16]
            loss = nn.functional.l1_loss(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    return model, {"epochs": args.epochs, "seconds": time.perf_counter() - start, "train_l1": losses,
                   "parameters": params, "base": args.base, "depth": 5}


def cached_student(data: Any, args: argparse.Namespace) -> tuple[UNetGenerator, dict[str, Any]]:
    """``train_student``, or its weights and training record from ``--student`` when that file exists (written
    there after training when it does not), so that timings can be repeated without training again."""
    if args.student is None:
        return train_student(data, args)
    record = args.student.with_suffix(".json")
    settings = {"base": args.base, "size": args.size, "epochs": args.epochs, "seed": args.seed}
    if args.student.is_file() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("settings") != settings:
            raise SystemExit(f"--student {args.student} was trained with {saved.get('settings')}, not {settings}")
        model = build_unet(in_channels=1, out_channels=3, depth=5, base=args.base, dropout=0.0)
        model.load_state_dict(load_file(str(args.student)))
        return model.eval(), {**saved["training"], "loaded_from": str(args.student)}
    model, training = train_student(data, args)
    args.student.parent.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.student))
    record.write_text(json.dumps({"settings": settings, "training": training}))
    return model, training


def plant_outlier(model: UNetGenerator, level: int, ratio: float, calib: torch.Tensor) -> dict[str, Any]:
    """Give encoder ``level``'s output one channel ``ratio`` times the median channel's peak (see the module doc);
    in place, FP32 function unchanged. Returns what was done."""
    encoder = model.down[level]
    producer = encoder[-1]  # BatchNorm2d, or the innermost Conv2d (no norm)
    seen: dict[str, torch.Tensor] = {}
    hook = encoder.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
    with torch.no_grad():
        before = model(calib)
    hook.remove()
    peaks = seen["out"].abs().amax(dim=(0, 2, 3))
    channel = int(peaks.argmax())
    scale = float(ratio * peaks.median() / peaks[channel])
    consumers = [f"up.{level}.1"] + ([f"down.{level + 1}.1"] if level + 1 < model.depth else [])
    with torch.no_grad():
        producer.weight[channel] *= scale
        producer.bias[channel] *= scale
        model.up[level][1].weight[channel] /= scale  # ConvTranspose weight [in, out, k, k]; the skip comes first
        if level + 1 < model.depth:
            model.down[level + 1][1].weight[:, channel] /= scale  # Conv weight [out, in, k, k]
        change = float((model(calib) - before).abs().max())
    return {"level": level, "producer": f"down.{level}.{len(encoder) - 1}", "consumers": consumers,
            "channel": channel, "scale": scale, "ratio": ratio, "peak_before": float(peaks[channel]),
            "median_peak": float(peaks.median()), "fp32_max_abs_change": change}


def quality(out: np.ndarray, target: torch.Tensor, reference: np.ndarray) -> dict[str, float | None]:
    """PSNR and SSIM to the target, PSNR and SQNR to the FP32 output (outputs clamped to tanh's [-1, 1]; PSNR to
    FP32 is None for the FP32 output itself)."""
    images = torch.from_numpy(out).clamp(-1, 1)
    ref = torch.from_numpy(reference).clamp(-1, 1)
    same = bool(torch.equal(images, ref))
    return {"psnr_target": float(psnr(images, target)), "ssim_target": float(ssim(images, target)),
            "psnr_fp32": None if same else float(psnr(images, ref)),
            "sqnr_fp32_db": sqnr_db(reference, out)}


def other_int8(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    """The all-INT8 candidate on the ops ``--int8-ops`` did not choose: its name and its op types."""
    return ("int8-all-ops", INT8_OPS["all"]) if args.int8_ops == "kernels" else ("int8-kernel-ops", INT8_OPS["kernels"])


def candidates(fp32: str, ranking: Any, data: Any, args: argparse.Namespace, work: Path,
               stem: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every candidate's ONNX path, and the layers each mixed candidate keeps."""
    calib = data.train.inputs[:args.calibration]
    ops, (other, other_ops) = INT8_OPS[args.int8_ops], other_int8(args)
    paths = {"fp32": fp32,
             "int8": quantize_static_int8(fp32, work / f"{stem}.int8.onnx", calib, op_types=ops).path,
             other: quantize_static_int8(fp32, work / f"{stem}.int8o.onnx", calib, op_types=other_ops).path,
             "fp16-all": convert_fp16(fp32, work / f"{stem}.fp16.onnx").path}
    kept = {}
    for k in args.ks:
        for keep in ("fp16", "fp32"):
            made = mixed_precision(fp32, ranking, k, work / f"{stem}.k{k}{keep}.onnx", calib, keep=keep,
                                   op_types=ops)
            paths[f"mixed-k{k}-{keep}"], kept[f"mixed-k{k}-{keep}"] = made.path, made.excluded
    return paths, kept


def verdicts(scores: dict[str, dict[str, Any]], p50: dict[tuple[str, int], float], args: argparse.Namespace
             ) -> dict[str, Any]:
    """Recovered share of INT8's quality loss and share of its latency gain given back, per mixed candidate."""
    loss = scores["fp32"]["psnr_target"] - scores["int8"]["psnr_target"]
    out: dict[str, Any] = {"int8_loss_db": loss, "int8_visibly_hurts": loss >= args.visible_db}
    for batch in args.batch_sizes:
        fp32_ms, int8_ms = p50[("fp32", batch)], p50[("int8", batch)]
        gain = fp32_ms - int8_ms
        row: dict[str, Any] = {"int8_speedup": fp32_ms / int8_ms, "int8_gain_ms": gain,
                               "fp16_all_speedup": fp32_ms / p50[("fp16-all", batch)],
                               "int8_other_ops_speedup": fp32_ms / p50[(other_int8(args)[0], batch)]}
        for name in (n for n in scores if n.startswith("mixed-")):
            mixed_ms = p50[(name, batch)]
            recovered = ((scores[name]["psnr_target"] - scores["int8"]["psnr_target"]) / loss
                         if loss >= args.visible_db else None)
            given_back = (mixed_ms - int8_ms) / gain if gain > 0 else None
            if recovered is None:
                met, why = None, "all-INT8 does not visibly hurt quality: nothing to recover"
            elif given_back is None:
                met, why = False, "all-INT8 is not faster than FP32 on this CPU: no latency gain to give back"
            elif gain < args.min_gain * fp32_ms:
                met, why = None, (f"all-INT8 saves {gain / fp32_ms:.0%} of FP32's time, under --min-gain "
                                  f"{args.min_gain:.0%}: a share of that gain is within timing noise")
            else:
                met = recovered >= 0.5 and given_back <= 0.2
                why = (f"recovers {recovered:.0%} of the loss (>= 50%: {recovered >= 0.5}), gives back "
                       f"{given_back:.0%} of the gain (<= 20%: {given_back <= 0.2})")
            row[name] = {"speedup": fp32_ms / mixed_ms, "recovered_share_of_int8_loss": recovered,
                         "share_of_int8_gain_given_back": given_back, "target_met": met, "why": why}
        out[f"batch{batch}"] = row
    return out


def one_model(label: str, model: UNetGenerator, data: Any, args: argparse.Namespace, work: Path,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Export, rank, quantize, score and time one generator."""
    stem = label.replace("+", "-").replace("@", "-")
    fp32 = export_onnx(model, data.test.inputs[:2], work / f"{stem}.onnx", output_names=("image",))
    check = parity(model, fp32.path, data.test.inputs, atol=1e-4)
    calib = data.train.inputs[:args.calibration]
    ranking = layer_sensitivity(fp32.path, calib, data.val.inputs, op_types=INT8_OPS[args.int8_ops])
    paths, kept = candidates(fp32.path, ranking, data, args, work, stem)
    reference = run_onnx(onnx_session(fp32.path), data.test.inputs)
    scores = {name: quality(run_onnx(onnx_session(path), data.test.inputs), data.test.targets, reference)
              for name, path in paths.items()}
    kernels = {name: compute_precisions(path, data.test.inputs[:1]) for name, path in paths.items()}
    rows = benchmark(paths, (1, args.size, args.size), batch_sizes=args.batch_sizes, threads=[args.threads],
                     warmup=args.warmup, iterations=args.iterations, seed=args.seed)
    p50 = {(r.name, r.batch_size): r.p50_ms for r in rows}
    return {"model": label, "exporter": fp32.exporter, "parity_max_abs_error": check.max_abs_error,
            "sensitivity": ranking.to_dict(), "kept": kept, "quality": scores, "kernel_types": kernels,
            "sizes": {name: os.path.getsize(path) for name, path in paths.items()},
            "latency": rows_to_json(rows), "verdicts": verdicts(scores, p50, args), **extra}


def _fmt(value: float | None, spec: str = ".0%") -> str:
    return "n/a" if value is None else format(value, spec)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print every model's numbers and the verdict."""
    flags = result["cpu_flags"]
    vnni = [f for f in flags if "vnni" in f or f == "amx_int8"]
    print(f"CPU: {result['cpu_model']}; flags {', '.join(flags) or 'none'}; VNNI: {', '.join(vnni) or 'no'}; "
          f"ORT threads {args.threads}")
    print(f"student: {result['training']['parameters']:,} parameters, {result['training']['epochs']} epochs in "
          f"{result['training']['seconds']:.0f} s; grey baseline PSNR {result['grey_baseline_psnr']:.2f} dB")
    for m in result["models"]:
        print(f"\n{m['model']}: sensitivity (SQNR dB, layer alone in INT8) "
              + ", ".join(f"{r['module']}={r['sqnr_db']:.1f}" for r in m["sensitivity"]["layers"][:5]) + " ...")
        if "outlier" in m:
            o = m["outlier"]
            print(f"  outlier: channel {o['channel']} of {o['producer']} x{o['scale']:.1f} (peak {o['ratio']:g}x the "
                  f"median channel's), FP32 output change {o['fp32_max_abs_change']:.2g}")
        for name, q in m["quality"].items():
            print(f"  {name:16s} PSNR->target {q['psnr_target']:6.2f} dB  SSIM {q['ssim_target']:.4f}  "
                  f"PSNR->FP32 {_fmt(q['psnr_fp32'], '6.2f')} dB  kernels {m['kernel_types'][name]}")
        v = m["verdicts"]
        print(f"  all-INT8 loss {v['int8_loss_db']:.2f} dB PSNR (visible >= {args.visible_db} dB: "
              f"{v['int8_visibly_hurts']})")
        for batch in args.batch_sizes:
            b = v[f"batch{batch}"]
            times = {r["name"]: r["p50_ms"] for r in m["latency"] if r["batch_size"] == batch}
            print(f"  batch {batch}: p50 ms " + ", ".join(f"{k} {t:.3f}" for k, t in times.items()))
            print(f"    INT8 {b['int8_speedup']:.2f}x FP32 (gain {b['int8_gain_ms']:+.3f} ms), FP16-all "
                  f"{b['fp16_all_speedup']:.2f}x, {other_int8(args)[0]} {b['int8_other_ops_speedup']:.2f}x")
            for name in (n for n in b if n.startswith("mixed-")):
                print(f"    {name}: {b[name]['speedup']:.2f}x; recovers {_fmt(b[name]['recovered_share_of_int8_loss'])}"
                      f", gives back {_fmt(b[name]['share_of_int8_gain_given_back'])}; target met: "
                      f"{b[name]['target_met']} ({b[name]['why']})")
    print("\nVERDICT: " + result["verdict"])


def overall(models: list[dict[str, Any]], args: argparse.Namespace, flags: list[str]) -> str:
    """The verdict at the first batch size: is the target met, on which model, and if not, which half fails."""
    judged = [m for m in models if m["verdicts"]["int8_visibly_hurts"]]
    if not judged:
        return "not measurable: all-INT8 does not visibly hurt any model here."
    m = judged[0]
    batch = m["verdicts"][f"batch{args.batch_sizes[0]}"]
    mixed = {n: r for n, r in batch.items() if n.startswith("mixed-")}
    met = [n for n, r in mixed.items() if r["target_met"]]
    where = f"on {m['model']} (batch {args.batch_sizes[0]}, ORT CPU, {args.threads} thread)"
    if met:
        return f"target MET {where} by {', '.join(met)}."
    quality = [f"{n} {r['recovered_share_of_int8_loss']:.0%}" for n, r in mixed.items()
               if (r["recovered_share_of_int8_loss"] or 0) >= 0.5]
    half = (f"the quality half is met by {', '.join(quality)} of the INT8 loss recovered" if quality
            else "no candidate recovers half of the INT8 loss")
    if batch["int8_gain_ms"] <= 0:
        vnni = "yes" if any("vnni" in f for f in flags) else "no"
        cpu = f"this CPU ({', '.join(flags) or 'flags unknown'}; VNNI: {vnni})"
        speed = (f"all-INT8 runs {batch['int8_speedup']:.2f}x FP32 on {cpu}, i.e. slower, so there is no latency gain "
                 f"to give back; the mixed candidates run " + ", ".join(f"{n} {r['speedup']:.2f}x"
                                                                         for n, r in mixed.items()) + " FP32")
    elif batch["int8_speedup"] < 1 / (1 - args.min_gain):
        return (f"target NOT JUDGED {where}: {half}; but all-INT8 runs only {batch['int8_speedup']:.2f}x FP32, a gain "
                f"under --min-gain {args.min_gain:.0%} of FP32's time, too small to split into shares above the timing "
                "noise.")
    else:
        speed = "their latency cost: " + ", ".join(f"{n} gives back {_fmt(r['share_of_int8_gain_given_back'])}"
                                                   for n, r in mixed.items()) + " of INT8's gain"
    return f"target NOT met {where}: {half}; {speed}."


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the student (L1)")
    parser.add_argument("--base", type=int, default=64, help="the U-Net's base width (Pix2Pix: 64)")
    parser.add_argument("--size", type=int, default=32, help="image side (a multiple of 32: depth 5)")
    parser.add_argument("--calibration", type=int, default=64, help="calibration images (train split)")
    parser.add_argument("--int8-ops", choices=sorted(INT8_OPS), default="kernels",
                        help="ops quantized: those with an integer kernel on ORT's CPU provider, or all compute ops")
    parser.add_argument("--ks", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 3],
                        help="numbers of most sensitive layers kept in FP16 (and FP32)")
    parser.add_argument("--visible-db", type=float, default=0.5,
                        help="a PSNR drop (dB, to the target) from which INT8 visibly hurts")
    parser.add_argument("--outlier-level", type=int, default=1, help="encoder level of the planted outlier")
    parser.add_argument("--outlier-ratio", type=float, default=200.0,
                        help="planted outlier channel: its peak over the median channel's peak")
    parser.add_argument("--always-plant", action="store_true", help="plant the outlier even if INT8 hurts")
    parser.add_argument("--min-gain", type=float, default=0.1,
                        help="the share of FP32's time all-INT8 must save for the latency half to be judged")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (and torch threads)")
    parser.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[1, 8])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--student", type=Path, default=None,
                        help="safetensors file: load the trained student from it, or train and save it there")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    data = build_pairs("grey", size=args.size, multiple=32)
    model, training = cached_student(data, args)
    grey = data.test.inputs.repeat(1, 3, 1, 1)
    models = []
    with tempfile.TemporaryDirectory(prefix="gen-precision-") as work:
        plain = one_model("unet-student", model, data, args, Path(work), {})
        models.append(plain)
        if args.always_plant or not plain["verdicts"]["int8_visibly_hurts"]:
            planted = copy.deepcopy(model)
            info = plant_outlier(planted, args.outlier_level, args.outlier_ratio, data.train.inputs[:args.calibration])
            label = f"unet-student+outlier@down.{args.outlier_level}"
            models.append(one_model(label, planted, data, args, Path(work), {"outlier": info}))
    paths = {"json": str(args.json), "student": args.student and str(args.student)}
    result = {"settings": vars(args) | paths, "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
              "versions": versions(), "load_average": load_start, "load_average_end": os.getloadavg(),
              "data": {"direction": "grey", "size": args.size, "splits": {k: len(v) for k, v in data.splits.items()},
                       "directory": str(data.directory)},
              "training": training, "grey_baseline_psnr": float(psnr(grey, data.test.targets)), "models": models}
    result["verdict"] = overall(models, args, result["cpu_flags"])
    result["sanity"] = sanity(models)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))
    report(result, args)
    print(f"\nwrote {args.json}")
    failed = [name for name, held in result["sanity"].items() if not held]
    if failed:
        print(f"sanity checks FAILED: {', '.join(failed)}")
    return 1 if failed else 0


def sanity(models: list[dict[str, Any]]) -> dict[str, bool]:
    """Checks whose failure makes the numbers meaningless: ONNX parity with PyTorch, a planted outlier that
    leaves the FP32 function unchanged, and mixed candidates whose kept layers are not in the INT8 set."""
    checks = {}
    for m in models:
        checks[f"{m['model']}: ONNX parity <= 1e-4"] = m["parity_max_abs_error"] <= 1e-4
        if "outlier" in m:
            change = m["outlier"]["fp32_max_abs_change"]
            checks[f"{m['model']}: FP32 unchanged by the outlier (<= 1e-4)"] = change <= 1e-4
        ranking = [layer["node"] for layer in m["sensitivity"]["layers"]]
        checks[f"{m['model']}: mixed candidates keep the top of the ranking"] = all(
            kept == ranking[:len(kept)] for kept in m["kept"].values())
    return checks


if __name__ == "__main__":
    raise SystemExit(main())
