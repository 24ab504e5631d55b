"""The ``kd-edge`` command: ``distill``, ``recipes``, ``eval`` (kd-core's) and ``export``, ``quantize``, ``bench``
(and ``prune`` when ``kd_edge.prune.command`` is installed).

``export``, ``quantize`` and ``bench`` take a student by name (``--model cnn|mlp|...``, with ``--weights`` from
a safetensors file, or trained for ``--train-epochs`` on the demo digits) or, for quantize and bench, an
``.onnx`` file (``--onnx``). Calibration and evaluation data are the 8x8 sklearn digits (kd-core's blobs if
scikit-learn is missing). Each command writes a run directory with ``report.md``, a size–accuracy–latency plot
and ``results.json``, and prints where they are.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kd_core.cli import default_out, domain_main, domain_parser
from kd_core.errors import ConfigError, KDError

#: ``kd_edge.models.small.model_names()``, repeated here so that ``--help`` does not import torch (a test checks).
MODEL_NAMES = ("cnn", "cnn-wide", "mlp", "mlp-wide")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


def _prune_command() -> Any | None:
    """``kd_edge.prune.command`` if it is installed, else ``None``."""
    try:
        spec = importlib.util.find_spec("kd_edge.prune.command")
    except ModuleNotFoundError:
        return None
    return importlib.import_module("kd_edge.prune.command") if spec is not None else None


def _model_arguments(parser: argparse.ArgumentParser, onnx: bool) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=f"a student by name: {', '.join(MODEL_NAMES)}")
    if onnx:
        source.add_argument("--onnx", help="an FP32 .onnx model taking 8x8 digit images (64 values per sample)")
    parser.add_argument("--weights", help="safetensors weights for --model (default: train it, see --train-epochs)")
    parser.add_argument("--train-epochs", type=int, default=5,
                        help="without --weights: epochs of supervised training on the demo digits")
    parser.add_argument("--calibration-size", type=int, default=128, help="calibration images (from train)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset of the export")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default runs/edge-<command>, -2, ... if taken)")


def build_parser() -> argparse.ArgumentParser:
    """kd-core's domain parser plus ``export``, ``quantize``, ``bench`` (and ``prune`` if installed)."""
    parser = domain_parser("edge")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    export = sub.add_parser("export", help="export a student to ONNX (dynamo) and check parity with PyTorch")
    _model_arguments(export, onnx=False)
    export.add_argument("--atol", type=float, default=1e-4, help="max abs error allowed between PyTorch and ORT")

    quantize = sub.add_parser("quantize", help="INT8 (dynamic, static), FP16 or sensitivity-driven mixed precision")
    _model_arguments(quantize, onnx=True)
    quantize.add_argument("--mode", choices=["dynamic", "static", "fp16", "mixed"], default="static")
    quantize.add_argument("--k", type=int, default=1, help="mixed: the k most sensitive layers stay in --keep")
    quantize.add_argument("--keep", choices=["fp32", "fp16"], default="fp32", help="mixed: precision of kept layers")

    bench = sub.add_parser("bench", help="latency of PyTorch eager, ORT FP32, INT8 and mixed precision side by side")
    _model_arguments(bench, onnx=True)
    bench.add_argument("--batch-sizes", type=_ints, default=[1, 32], help="comma-separated, e.g. 1,32")
    bench.add_argument("--threads", type=_ints, default=[1], help="comma-separated thread counts, e.g. 1,2")
    bench.add_argument("--iterations", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=10)
    bench.add_argument("--k", type=int, default=1, help="layers kept in FP32 in the mixed-precision candidate")

    prune = _prune_command()
    if prune is not None:
        prune.add_arguments(sub.add_parser("prune", help="structured channel or layer pruning"))
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Every path and number checked before any work starts (a ``ConfigError`` naming the option)."""
    from kd_edge.models.small import model_names

    if getattr(args, "model", None) is not None and args.model not in model_names():
        raise ConfigError("--model", f"one of {model_names()}", args.model)
    for option in ("weights", "onnx"):
        value = getattr(args, option, None)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"--{option}", "an existing file", value)
    if args.weights is not None and getattr(args, "onnx", None) is not None:
        raise ConfigError("--weights", "no --weights with --onnx (the ONNX file holds its weights)", args.weights)
    if args.train_epochs < 0:
        raise ConfigError("--train-epochs", "an integer >= 0", args.train_epochs)
    if args.calibration_size < 1:
        raise ConfigError("--calibration-size", "an integer >= 1", args.calibration_size)
    if getattr(args, "k", 0) < 0:
        raise ConfigError("--k", "an integer >= 0", args.k)
    for option in ("iterations", "warmup"):
        if getattr(args, option, 1) < (1 if option == "iterations" else 0):
            raise ConfigError(f"--{option}", "a positive integer", getattr(args, option))
    for option in ("batch_sizes", "threads"):
        values = getattr(args, option, [1])
        if min(values) < 1:
            raise ConfigError(f"--{option.replace('_', '-')}", "integers >= 1", values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-edge``: exit status 0, or 2 with a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("distill", "recipes", "eval"):
        return domain_main("edge", argv)
    try:
        if args.command == "prune":
            return int(_prune_command().run(args))
        _check_args(args)
        out = Path(args.out) if args.out else default_out(f"edge-{args.command}", resume=False)
        run_dir = {"export": _run_export, "quantize": _run_quantize, "bench": _run_bench}[args.command](args, out)
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run directory: {run_dir}")
    print(f"report: {Path(run_dir) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------------------------------
# the commands (heavy imports stay inside, so that --help and recipes stay fast)


class _Student:
    """The command's subject: the demo data, the FP32 ONNX file and, for --model, the PyTorch module."""

    def __init__(self, args: argparse.Namespace, run: Any) -> None:
        import onnx
        import torch
        from kd_core.checkpoint import load_weights, save_weights

        from kd_edge.export import export_onnx, parity
        from kd_edge.models.small import build_model, demo_data, train_classifier

        self.data = demo_data(calibration_size=args.calibration_size, seed=args.seed)
        self.module = None
        self.notes: list[str] = [f"Data: {self.data.source}; {len(self.data.train_y)} train images "
                                 f"({args.calibration_size} of them for calibration), {len(self.data.test_y)} test."]
        self.export = self.parity = None
        if args.model is not None:
            model = build_model(args.model, seed=args.seed)
            if args.weights:
                load_weights(model, args.weights)
                self.notes.append(f"Weights: {args.weights}.")
            else:
                train_classifier(model, self.data.train_x, self.data.train_y, epochs=args.train_epochs,
                                 seed=args.seed)
                save_weights(model, run.checkpoints / "student.safetensors")
                self.notes.append(f"Weights: trained {args.train_epochs} epochs here (AdamW, cross-entropy), saved "
                                  f"to `checkpoints/student.safetensors`.")
            self.module = model.eval()
            self.export = export_onnx(model, self.data.test_x[:2], run.path / "model.onnx", opset=args.opset)
            self.parity = parity(model, self.export.path, self.data.test_x, self.data.test_y,
                                 atol=getattr(args, "atol", 1e-4), save_to=run.path / "parity.json")
            self.onnx_path = Path(self.export.path)
        else:
            self.onnx_path = Path(args.onnx)
            graph = onnx.load(str(self.onnx_path), load_external_data=False).graph
            dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
            if len(graph.input) != 1 or not dims or 0 in dims or int(torch.tensor(dims).prod()) != 64:
                raise ConfigError("--onnx", "a model with one input of 64 values per sample (8x8 digits)",
                                  f"{len(graph.input)} input(s), per-sample shape {dims}")
            self.data.train_x, self.data.calib_x, self.data.test_x = (
                t.reshape(len(t), *dims) for t in (self.data.train_x, self.data.calib_x, self.data.test_x))
        self.input_shape = tuple(self.data.test_x.shape[1:])

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


def _open_run(args: argparse.Namespace, out: Path) -> Any:
    from kd_core.runs import RunDir

    config = {k: v for k, v in vars(args).items() if k != "func"}
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


def _run_export(args: argparse.Namespace, out: Path) -> Path:
    from kd_edge.report import finish_run

    run = _open_run(args, out)
    student = _Student(args, run)
    candidates = {"pytorch": student.module, "ort-fp32": student.onnx_path}
    latency = _quick_latency(candidates, student.input_shape)
    rows, points = _model_rows(student, candidates, latency)
    summary, results = _export_summary(student)
    from kd_edge.latency import rows_to_json

    results["latency"] = rows_to_json(latency)
    finish_run(run, f"kd-edge export: {args.model}", summary, [("Models (test split, CPU)", rows)], points,
               results, notes=" ".join(student.notes))
    return run.path


def _run_quantize(args: argparse.Namespace, out: Path) -> Path:
    from dataclasses import asdict

    from kd_core.progress import progress_bar

    from kd_edge.latency import rows_to_json
    from kd_edge.quantize import convert_fp16, quantize_dynamic_int8, quantize_static_int8
    from kd_edge.report import finish_run
    from kd_edge.sensitivity import layer_sensitivity, mixed_precision

    run = _open_run(args, out)
    student = _Student(args, run)
    src, data = student.onnx_path, student.data
    results: dict[str, Any] = _export_summary(student)[1]
    tables: list[tuple[str, list]] = []
    candidates: dict[str, Any] = {"ort-fp32": src}
    if args.mode == "dynamic":
        made = quantize_dynamic_int8(src, run.path / "model.int8-dynamic.onnx")
    elif args.mode == "static":
        made = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x)
    elif args.mode == "fp16":
        made = convert_fp16(src, run.path / "model.fp16.onnx")
    else:
        with progress_bar() as progress:
            task = progress.add_task("sensitivity", total=None, info="")
            report = layer_sensitivity(src, data.calib_x, data.test_x, data.test_y,
                                       on_layer=lambda name: progress.update(task, advance=1, info=name))
        results["sensitivity"] = report.to_dict()
        tables.append(("Per-layer INT8 sensitivity (one layer quantized at a time)", [
            {"rank": r.rank, "node": r.node, "module": r.module, "op": r.op_type, "SQNR dB": round(r.sqnr_db, 2),
             "Δ accuracy pts": round(100 * r.metric_delta, 2)} for r in report.layers]))
        all_int8 = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x)
        candidates["ort-int8"] = all_int8.path
        made = mixed_precision(src, report, args.k, run.path / f"model.mixed-k{args.k}-{args.keep}.onnx",
                               data.calib_x, keep=args.keep)
    name = {"dynamic": "ort-int8-dynamic", "static": "ort-int8", "fp16": "ort-fp16"}.get(args.mode, "ort-mixed")
    candidates[name] = made.path
    results["quantized"] = {**asdict(made), "size_ratio": made.size_ratio}
    latency = _quick_latency(candidates, student.input_shape)
    rows, points = _model_rows(student, candidates, latency)
    results["latency"] = rows_to_json(latency)
    fp32, new = rows[0], rows[-1]
    summary = (f"**{made.mode}**: {len(made.quantized_layers)} layers with INT8 weights"
               f"{', ' + str(len(made.excluded)) + ' kept in ' + args.keep.upper() if made.excluded else ''}. "
               f"Size {made.size_ratio:.3f}× the FP32 ONNX file, accuracy {fp32['accuracy %']:.2f}% → "
               f"{new['accuracy %']:.2f}%, batch-1 p50 {fp32['p50 ms']:.4f} → {new['p50 ms']:.4f} ms "
               f"(ORT, 1 thread). {_export_summary(student)[0]}")
    finish_run(run, f"kd-edge quantize ({args.mode}): {args.model or Path(args.onnx).name}", summary,
               [("Models (test split, CPU)", rows), *tables], points, results, notes=" ".join(student.notes))
    return run.path


def _run_bench(args: argparse.Namespace, out: Path) -> Path:
    from kd_core.progress import progress_bar

    from kd_edge.latency import benchmark, rows_to_json
    from kd_edge.quantize import quantize_dynamic_int8, quantize_static_int8
    from kd_edge.report import finish_run
    from kd_edge.sensitivity import layer_sensitivity, mixed_precision

    run = _open_run(args, out)
    student = _Student(args, run)
    src, data = student.onnx_path, student.data
    candidates: dict[str, Any] = {"pytorch": student.module} if student.module is not None else {}
    candidates["ort-fp32"] = src
    candidates["ort-int8-dynamic"] = quantize_dynamic_int8(src, run.path / "model.int8-dynamic.onnx").path
    candidates["ort-int8"] = quantize_static_int8(src, run.path / "model.int8-static.onnx", data.calib_x).path
    report = layer_sensitivity(src, data.calib_x, data.test_x, data.test_y)
    candidates[f"ort-mixed-k{args.k}"] = mixed_precision(src, report, min(args.k, len(report.layers)),
                                                         run.path / f"model.mixed-k{args.k}.onnx", data.calib_x).path
    blocks = len(args.threads) * len(args.batch_sizes)
    with progress_bar() as progress:
        task = progress.add_task("latency", total=blocks, info="")
        latency = benchmark(candidates, student.input_shape, batch_sizes=args.batch_sizes, threads=args.threads,
                            warmup=args.warmup, iterations=args.iterations, seed=args.seed,
                            on_step=lambda label: progress.update(task, advance=1, info=label))
    rows, points = _model_rows(student, candidates, [r for r in latency if r.batch_size == args.batch_sizes[0]
                                                     and r.threads == args.threads[0]])
    fp32 = {(r.batch_size, r.threads): r.p50_ms for r in latency if r.name == "ort-fp32"}
    timing = [{"model": r.name, "batch": r.batch_size, "threads": r.threads, "p50 ms": round(r.p50_ms, 4),
               "p90 ms": round(r.p90_ms, 4), "p99 ms": round(r.p99_ms, 4),
               "speed-up vs ORT FP32": round(fp32[(r.batch_size, r.threads)] / r.p50_ms, 2),
               "samples/s": round(r.samples_per_s, 1),
               "peak MB": "" if r.peak_memory_mb is None else round(r.peak_memory_mb, 2)} for r in latency]
    results = {**_export_summary(student)[1], "latency": rows_to_json(latency), "sensitivity": report.to_dict(),
               "accuracy": {row["model"]: row["accuracy %"] for row in rows}}
    summary = (f"{len(candidates)} candidates timed interleaved in one run ({args.iterations} iterations after "
               f"{args.warmup} warm-up, batch sizes {args.batch_sizes}, threads {args.threads}). "
               f"{_export_summary(student)[0]}")
    notes = (" ".join(student.notes) + " Peak MB: rise of the peak resident set (VmHWM, reset before each "
             "candidate) over the resident set before that candidate's warm-up, i.e. a forward pass's working "
             "memory; Linux only.")
    finish_run(run, f"kd-edge bench: {args.model or Path(args.onnx).name}", summary,
               [("Models (test split; latency at the first batch size and thread count)", rows),
                ("Latency (ms per forward pass)", timing)], points, results, notes=notes)
    return run.path


if __name__ == "__main__":
    raise SystemExit(main())
