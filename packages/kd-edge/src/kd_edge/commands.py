"""The bodies of ``kd-edge export``, ``quantize`` and ``bench`` (``kd_edge.cli`` parses and checks the arguments,
then calls ``run_export`` / ``run_quantize`` / ``run_bench``). Each writes a run directory with ``report.md``, a
size–accuracy–latency plot and ``results.json`` and returns its path.

Heavy imports (torch, onnx, ONNX Runtime) stay inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kd_edge.sources import Source

__all__ = ["run_bench", "run_export", "run_quantize"]


class _Student:
    """The command's subject: its data, the FP32 ONNX file and, unless it is an ONNX file, the PyTorch module."""

    def __init__(self, args: argparse.Namespace, run: Any, source: Source) -> None:
        from kd_core.checkpoint import save_weights

        from kd_edge.data.digits import train_classifier
        from kd_edge.export import export_onnx, parity

        data = source.data
        assert data is not None  # resolve() always gives export, quantize and bench data
        self.data, self.module, self.label = data, source.model, source.label
        self.notes: list[str] = [f"Data: {data.source}; {len(data.train_y)} train inputs "
                                 f"({len(data.calib_x)} of them for calibration), {len(data.test_y)} test.",
                                 *source.notes]
        self.export = self.parity = None
        if source.model is not None:
            model = source.model
            if source.train:
                train_classifier(model, data.train_x, data.train_y, epochs=args.train_epochs,
                                 seed=args.seed or 0)
                save_weights(model, run.checkpoints / "student.safetensors")
                self.notes.append(f"Weights: trained {args.train_epochs} epochs here (AdamW, cross-entropy), saved "
                                  f"to `checkpoints/student.safetensors`.")
            self.module = model.eval()
            self.export = export_onnx(model, data.test_x[:2], run.path / "model.onnx", opset=args.opset)
            self.parity = parity(model, self.export.path, data.test_x, data.test_y,
                                 atol=getattr(args, "atol", 1e-4), save_to=run.path / "parity.json")
            self.onnx_path = Path(self.export.path)
        else:
            assert source.onnx is not None
            self.onnx_path = source.onnx  # its input shape was checked against the data by resolve()
        self.input_shape = tuple(data.test_x.shape[1:])

    def accuracy(self, path: str | Path) -> float:
        """Test accuracy of an ONNX model through ONNX Runtime."""
        from kd_edge.export import onnx_session, run_onnx

        predicted = run_onnx(onnx_session(path), self.data.test_x).argmax(axis=1)
        return float((predicted == self.data.test_y.numpy()).mean())

    def torch_accuracy(self) -> float:
        """Test accuracy of the PyTorch module."""
        import torch

        with torch.inference_mode():
            return float((self.module(self.data.test_x).argmax(1) == self.data.test_y).double().mean())


def _open_run(args: argparse.Namespace, out: Path, source: Source) -> Any:
    from kd_core.runs import RunDir

    config = {**{k: v for k, v in vars(args).items() if k != "func"}, "data_source": source.data.source
              if source.data is not None else None}
    return RunDir.create(out, config)


def _model_rows(student: _Student, candidates: dict[str, Any], latency: list[Any]) -> tuple[list, list]:
    """Table rows and plot points: accuracy, size and batch-1 p50 latency of every candidate."""
    first = {row.name: row for row in reversed(latency)}
    fp32_size = next(r.size_bytes for r in latency if r.name == "ort-fp32")
    rows, points = [], []
    for name, model in candidates.items():
        acc = student.torch_accuracy() if name == "pytorch" else student.accuracy(model)
        row = first[name]
        rows.append({"model": name, "accuracy %": round(100 * acc, 2), "size (KiB)": round(row.size_bytes / 1024, 1),
                     "size / ORT FP32": round(row.size_bytes / fp32_size, 3), "p50 ms": round(row.p50_ms, 4),
                     "batch": row.batch_size, "threads": row.threads})
        points.append({"name": name, "size_bytes": row.size_bytes, "latency_ms": row.p50_ms, "accuracy": acc})
    return rows, points


def _quick_latency(candidates: dict[str, Any], shape: tuple[int, ...]) -> list[Any]:
    from kd_edge.latency import benchmark

    return benchmark(candidates, shape, batch_sizes=[1], threads=[1], warmup=5, iterations=30)


def _export_summary(student: _Student) -> tuple[str, dict]:
    if student.export is None:
        return "", {}
    p, e = student.parity, student.export
    verdict = "within" if p.passed else "**outside**"
    text = (f"Exported with the **{e.exporter}** exporter (opset {e.opset}, dynamic batch) in {e.seconds:.1f} s"
            f"{'; dynamo failed: ' + e.dynamo_error if e.dynamo_error else ''}. Parity on {p.samples} test images: "
            f"max |PyTorch − ORT| = {p.max_abs_error:.3g} ({verdict} atol {p.atol:g}), accuracy "
            f"{100 * p.torch_metric:.2f}% → {100 * p.onnx_metric:.2f}% (Δ {100 * p.metric_delta:+.2f} pts).")
    from dataclasses import asdict

    return text, {"export": asdict(e), "parity": asdict(p)}


def run_export(args: argparse.Namespace, out: Path, source: Source) -> Path:
    from kd_edge.report import finish_run

    run = _open_run(args, out, source)
    student = _Student(args, run, source)
    candidates = {"pytorch": student.module, "ort-fp32": student.onnx_path}
    latency = _quick_latency(candidates, student.input_shape)
    rows, points = _model_rows(student, candidates, latency)
    summary, results = _export_summary(student)
    from kd_edge.latency import rows_to_json

    results["latency"] = rows_to_json(latency)
    finish_run(run, f"kd-edge export: {student.label}", summary, [("Models (test split, CPU)", rows)], points,
               results, notes=" ".join(student.notes))
    return run.path


def _scheme_sentence(made: Any) -> str:
    """The report's sentence on the INT8 scheme used and why (empty for a model that is not INT8)."""
    if not getattr(made, "scheme", ""):
        return ""
    error = "" if made.relative_error is None else (f", max output error {100 * made.relative_error:.2f} % of the "
                                                    "FP32 range on the calibration data")
    return f"INT8 scheme **{made.scheme}** ({made.scheme_reason}{error}). "


def _fp16_sentence(made: Any, data: Any) -> tuple[str, dict[str, int]]:
    """For a model with FP16 kept layers: which kernel types ONNX Runtime really ran on this CPU, as a sentence
    for the report (empty otherwise) and the counts."""
    if getattr(made, "mode", "") != "mixed-int8-fp16":
        return "", {}
    from kd_edge.quantize import compute_precisions

    counts = compute_precisions(made.path, data.calib_x[:1])
    if counts.get("float16"):
        return f"ONNX Runtime ran {counts['float16']} compute kernels in FP16 on this CPU. ", counts
    return ("The kept layers' weights are stored in FP16, but ONNX Runtime's CPU provider has no FP16 kernel for "
            "them on this CPU: it runs them in FP32 (weights upcast at load, FP16 rounding kept), so they cost what "
            "FP32 layers cost here. ", counts)


def run_quantize(args: argparse.Namespace, out: Path, source: Source) -> Path:
    from dataclasses import asdict

    from kd_core.progress import progress_bar

    from kd_edge.latency import rows_to_json
    from kd_edge.quantize import INT8_OPS, convert_fp16, quantize_dynamic_int8, quantize_static_int8
    from kd_edge.report import finish_run
    from kd_edge.sensitivity import layer_sensitivity, mixed_precision

    run = _open_run(args, out, source)
    student = _Student(args, run, source)
    src, data = student.onnx_path, student.data
    ops = INT8_OPS[args.int8_ops]
    results: dict[str, Any] = {**_export_summary(student)[1], "int8_ops": list(ops)}
    tables: list[tuple[str, list]] = []
    candidates: dict[str, Any] = {"ort-fp32": src}
    if args.mode == "dynamic":
        made = quantize_dynamic_int8(src, run.path / "model.int8-dynamic.onnx", validation=data.calib_x)
    elif args.mode == "static":
        made = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x, op_types=ops)
    elif args.mode == "fp16":
        made = convert_fp16(src, run.path / "model.fp16.onnx")
    else:
        with progress_bar() as progress:
            task = progress.add_task("sensitivity", total=None, info="")
            report = layer_sensitivity(src, data.calib_x, data.test_x, data.test_y, op_types=ops,
                                       on_layer=lambda name: progress.update(task, advance=1, info=name))
        results["sensitivity"] = report.to_dict()
        tables.append(("Per-layer INT8 sensitivity (one layer quantized at a time)", [
            {"rank": r.rank, "node": r.node, "module": r.module, "op": r.op_type, "SQNR dB": round(r.sqnr_db, 2),
             "Δ accuracy pts": round(100 * r.metric_delta, 2)} for r in report.layers]))
        all_int8 = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x, op_types=ops)
        candidates["ort-int8"] = all_int8.path
        made = mixed_precision(src, report, args.k, run.path / f"model.mixed-k{args.k}-{args.keep}.onnx",
                               data.calib_x, keep=args.keep, op_types=ops)
    name = {"dynamic": "ort-int8-dynamic", "static": "ort-int8", "fp16": "ort-fp16"}.get(args.mode, "ort-mixed")
    candidates[name] = made.path
    results["quantized"] = {**asdict(made), "size_ratio": made.size_ratio}
    fp16_note, results["kernel_types"] = _fp16_sentence(made, data)
    latency = _quick_latency(candidates, student.input_shape)
    rows, points = _model_rows(student, candidates, latency)
    results["latency"] = rows_to_json(latency)
    fp32, new = rows[0], rows[-1]
    summary = (f"**{made.mode}**: {len(made.quantized_layers)} layers with INT8 weights"
               f"{', ' + str(len(made.excluded)) + ' kept in ' + args.keep.upper() if made.excluded else ''}. "
               f"Size {made.size_ratio:.3f}× the FP32 ONNX file, accuracy {fp32['accuracy %']:.2f}% → "
               f"{new['accuracy %']:.2f}%, batch-1 p50 {fp32['p50 ms']:.4f} → {new['p50 ms']:.4f} ms "
               f"(ORT, 1 thread). {fp16_note}{_scheme_sentence(made)}{_export_summary(student)[0]}")
    finish_run(run, f"kd-edge quantize ({args.mode}): {student.label}", summary,
               [("Models (test split, CPU)", rows), *tables], points, results, notes=" ".join(student.notes))
    return run.path


def run_bench(args: argparse.Namespace, out: Path, source: Source) -> Path:
    from kd_core.progress import progress_bar

    from kd_edge.latency import benchmark, rows_to_json
    from kd_edge.quantize import INT8_OPS, quantize_dynamic_int8, quantize_static_int8
    from kd_edge.report import finish_run
    from kd_edge.sensitivity import layer_sensitivity, mixed_precision

    run = _open_run(args, out, source)
    student = _Student(args, run, source)
    src, data = student.onnx_path, student.data
    candidates: dict[str, Any] = {"pytorch": student.module} if student.module is not None else {}
    candidates["ort-fp32"] = src
    dynamic = quantize_dynamic_int8(src, run.path / "model.int8-dynamic.onnx", validation=data.calib_x)
    ops = INT8_OPS[args.int8_ops]
    static = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x, op_types=ops)
    candidates["ort-int8-dynamic"], candidates["ort-int8"] = dynamic.path, static.path
    report = layer_sensitivity(src, data.calib_x, data.test_x, data.test_y, op_types=ops)
    mixed = mixed_precision(src, report, min(args.k, len(report.layers)),
                            run.path / f"model.mixed-k{args.k}-{args.keep}.onnx", data.calib_x, keep=args.keep,
                            op_types=ops)
    candidates[f"ort-mixed-k{args.k}"] = mixed.path
    blocks = len(args.threads) * len(args.batch_sizes)
    with progress_bar() as progress:
        task = progress.add_task("latency", total=blocks, info="")
        latency = benchmark(candidates, student.input_shape, batch_sizes=args.batch_sizes, threads=args.threads,
                            warmup=args.warmup, iterations=args.iterations, seed=args.seed or 0,
                            on_step=lambda label: progress.update(task, advance=1, info=label))
    rows, points = _model_rows(student, candidates, [r for r in latency if r.batch_size == args.batch_sizes[0]
                                                     and r.threads == args.threads[0]])
    fp32 = {(r.batch_size, r.threads): r.p50_ms for r in latency if r.name == "ort-fp32"}
    timing = [{"model": r.name, "batch": r.batch_size, "threads": r.threads, "p50 ms": round(r.p50_ms, 4),
               "p90 ms": round(r.p90_ms, 4), "p99 ms": round(r.p99_ms, 4),
               "speed-up vs ORT FP32": round(fp32[(r.batch_size, r.threads)] / r.p50_ms, 2),
               "samples/s": f"{r.samples_per_s:,.0f}",
               "peak MB": "" if r.peak_memory_mb is None else round(r.peak_memory_mb, 2)} for r in latency]
    fp16_note, kernel_types = _fp16_sentence(mixed, data)
    results = {**_export_summary(student)[1], "int8_ops": list(ops), "latency": rows_to_json(latency),
               "sensitivity": report.to_dict(),
               "mixed": {"k": len(mixed.excluded), "keep": args.keep, "kept": mixed.excluded, "mode": mixed.mode,
                         "kernel_types": kernel_types},
               "int8_scheme": {name: {"scheme": q.scheme, "reason": q.scheme_reason, "relative_error": q.relative_error,
                                      "tried": q.schemes_tried} for name, q in (("dynamic", dynamic),
                                                                                 ("static", static))},
               "accuracy": {row["model"]: row["accuracy %"] for row in rows}}
    summary = (f"{len(candidates)} candidates timed interleaved in one run ({args.iterations} iterations after "
               f"{args.warmup} warm-up, batch sizes {args.batch_sizes}, threads {args.threads}). Mixed precision: "
               f"the {len(mixed.excluded)} most INT8-sensitive layer{'' if len(mixed.excluded) == 1 else 's'} kept in "
               f"{args.keep.upper()}, the rest INT8. "
               f"{fp16_note}{_scheme_sentence(static)}{_export_summary(student)[0]}")
    notes = (" ".join(student.notes) + " Peak MB: rise of the peak resident set (VmHWM, reset before each "
             "candidate) over the resident set before that candidate's warm-up, i.e. a forward pass's working "
             "memory; Linux only.")
    finish_run(run, f"kd-edge bench: {student.label}", summary,
               [("Models (test split; latency at the first batch size and thread count)", rows),
                ("Latency (ms per forward pass)", timing)], points, results, notes=notes)
    return run.path
