"""The ``kd-edge`` command: ``distill``, ``recipes``, ``eval`` (kd-core's) and ``export``, ``quantize``, ``bench``
(and ``prune`` when ``kd_edge.prune.command`` is installed). The command bodies are in ``kd_edge.commands``.

``export``, ``quantize``, ``bench`` and ``prune`` take a model from a run directory of any domain (``--run``), a
built-in digit student, a pruned-model directory or a ``package.module:function`` builder (``--model``), a
local Hugging Face directory (``--hf``) or, for quantize and bench, an ``.onnx`` file (``--onnx``); data come
from the run's task or ``--data`` (``kd_edge.sources``). Each command writes a run directory with ``report.md``,
a size–accuracy–latency plot and ``results.json``, and prints where they are.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kd_core.cli import default_out, domain_main, domain_parser, run_command
from kd_core.errors import ConfigError

from kd_edge.sources import MODEL_NAMES  # noqa: F401  (the names, without importing torch: a test checks)


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
    from kd_edge.sources import add_data_arguments, add_source_arguments

    add_source_arguments(parser, onnx=onnx)
    add_data_arguments(parser)
    parser.add_argument("--train-epochs", type=int, default=5,
                        help="a built-in student or builder without --weights: epochs of supervised training here")
    parser.add_argument("--calibration-size", type=int, default=128, help="calibration inputs (from train)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset of the export")
    parser.add_argument("--out", default=None, help="run directory (default runs/edge-<command>, -2, ... if taken)")


_INT8_OPS_HELP = ("static and mixed INT8: quantize every compute layer ('all': a portable QDQ model, e.g. for "
                  "TensorRT) or only the ops ONNX Runtime's CPU provider has integer kernels for ('kernels': Conv, "
                  "Gemm, MatMul; ConvTranspose stays FP32, which is faster on the CPU)")


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
    quantize.add_argument("--keep", choices=["fp16", "fp32"], default="fp16",
                          help="mixed: precision of the kept layers (FP16 as in Kim et al.; on an x86 CPU ONNX "
                               "Runtime runs FP16 layers in FP32 with FP16 weights)")
    quantize.add_argument("--int8-ops", choices=["all", "kernels"], default="all", help=_INT8_OPS_HELP)

    bench = sub.add_parser("bench", help="latency of PyTorch eager, ORT FP32, INT8 and mixed precision side by side")
    _model_arguments(bench, onnx=True)
    bench.add_argument("--batch-sizes", type=_ints, default=[1, 32], help="comma-separated, e.g. 1,32")
    bench.add_argument("--threads", type=_ints, default=[1], help="comma-separated thread counts, e.g. 1,2")
    bench.add_argument("--iterations", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=10)
    bench.add_argument("--k", type=int, default=1, help="layers kept in --keep in the mixed-precision candidate")
    bench.add_argument("--keep", choices=["fp16", "fp32"], default="fp16",
                       help="precision of the mixed candidate's kept layers")
    bench.add_argument("--int8-ops", choices=["all", "kernels"], default="all", help=_INT8_OPS_HELP)

    prune = _prune_command()
    if prune is not None:
        prune.add_arguments(sub.add_parser("prune", help="structured channel or layer pruning"))
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Every number checked before any work starts (a ``ConfigError`` naming the option); the model, data and
    paths are checked by ``kd_edge.sources.resolve``."""
    import math

    from kd_core.recipes import check_seed
    from kd_core.specs import check_trust

    from kd_edge.export import OPSETS

    check_trust(args.trust)
    if args.seed is not None:
        check_seed(args.seed)
    if args.train_epochs < 0:
        raise ConfigError("--train-epochs", "an integer >= 0", args.train_epochs)
    if not OPSETS[0] <= args.opset <= OPSETS[1]:
        raise ConfigError("--opset", f"an ONNX opset version in [{OPSETS[0]}, {OPSETS[1]}]", args.opset)
    if hasattr(args, "atol") and not (math.isfinite(args.atol) and args.atol >= 0):
        raise ConfigError("--atol", "a finite tolerance >= 0", args.atol)
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
    return run_command(lambda: _command(args))


def _command(args: argparse.Namespace) -> int:
    """``export``, ``quantize``, ``bench`` or ``prune``."""
    if args.command == "prune":
        return int(_prune_command().run(args))
    _check_args(args)
    from kd_edge import commands  # torch, onnx and ORT load only here, so --help stays fast
    from kd_edge.sources import resolve

    source = resolve(args)  # every check on the model and data, before the run directory exists
    out = Path(args.out) if args.out else default_out(f"edge-{args.command}", resume=False)
    run_dir = {"export": commands.run_export, "quantize": commands.run_quantize,
               "bench": commands.run_bench}[args.command](args, out, source)
    print(f"run directory: {run_dir}")
    print(f"report: {Path(run_dir) / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
