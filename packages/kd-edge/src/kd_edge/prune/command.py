"""``kd-edge prune``: prune a model (channels, layers, U-Net inner layers) and write a run directory.

The model comes from any source ``kd_edge.sources`` resolves: a run directory of any domain (``--run``), a
builder reference (``package.module:function`` with ``--model-kwargs``, ``--weights``), a built-in digit
student, a pruned-model directory written earlier (so pruning steps chain) or a local Hugging Face directory
(``--hf``). With data (the run's task, ``--data``, ``--digits`` or the data a pruned model records) accuracy is
measured before and after, and the pruned model is fine-tuned by distillation from the unpruned one through
kd-core's ``Distiller`` (a ``FrozenTeacher`` of the unpruned model, α·T²·KL + (1 − α)·CE on the train split).
The run directory holds ``model/`` (architecture record + safetensors, reloadable with
``kd_edge.prune.record.load_pruned``; the record also names the data), ``results.json``,
``plots/size_latency.png`` and ``report.md`` with parameters, MACs, size and CPU latency before and after.
``run`` raises ``KDError`` on bad input (trust included), before any model is pruned or a run directory made.

The U-Net methods (``unet-inner``, ``unet-cut``) take any model that describes itself through
``kd_core.structure`` (``unet_structure()``), e.g. ``--model kd_generative.models.unet:build_unet
--model-kwargs '{"in_channels": 1, "out_channels": 1, "depth": 4, "base": 8}'`` where kd-generative is
installed; a model's ``input_shape`` (``(C, H, W)``) gives the default example input when no data do.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kd_core.cli import default_out
from kd_core.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from kd_edge.prune.common import ExampleInputs
    from kd_edge.sources import EdgeData

# torch, torch_pruning, matplotlib and the pruning modules are imported inside the functions that use them, so
# that ``kd-edge --help`` (which calls ``add_arguments``) does not load them.

RECORD = "architecture.json"  # kd_edge.prune.record.RECORD, repeated so that the help text costs no import

__all__ = ["METHODS", "add_arguments", "distill_finetune", "run"]

METHODS = ("channels", "layers", "unet-inner", "unet-cut")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kd-edge prune``."""
    from kd_edge.sources import add_data_arguments, add_source_arguments

    add_source_arguments(parser, onnx=False)
    add_data_arguments(parser)
    parser.add_argument("--method", default="channels", choices=METHODS,
                        help="channels: structured channel pruning; layers: drop blocks (--layers); "
                             "unet-inner: prune --ratio of the filters of the --levels innermost U-Net levels; "
                             "unet-cut: delete the --levels innermost U-Net levels")
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove, in [0, 1)")
    parser.add_argument("--layers", default=None, help="comma-separated block indices for --method layers")
    parser.add_argument("--container", default=None, help="the block stack for --method layers (default: found)")
    parser.add_argument("--levels", type=int, default=None,
                        help="U-Net levels for unet-inner (default 2) or unet-cut (default 1)")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2"], help="filter ranking for channels")
    parser.add_argument("--global", dest="global_pruning", action="store_true",
                        help="rank channels across layers instead of the same ratio per layer")
    parser.add_argument("--input-shape", default=None,
                        help="example input shape, e.g. 1,3,32,32 (token models: batch,sequence); "
                             "default: the data's, or known for kd builders and saved records")
    parser.add_argument("--latency-iterations", type=int, default=30, help="timed CPU forward passes")
    parser.add_argument("--digits", action="store_true", help="the real 8x8 digits as data (same as --data digits)")
    parser.add_argument("--train-epochs", type=int, default=8,
                        help="with data, a built model and no --weights: train it this long first (cross-entropy)")
    parser.add_argument("--finetune-epochs", type=int, default=2,
                        help="with data: distil the unpruned model into the pruned one this long (0: no fine-tuning)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="AdamW learning rate of the fine-tuning")
    parser.add_argument("--kd-temperature", type=float, default=4.0, help="fine-tuning: the KD temperature T")
    parser.add_argument("--kd-alpha", type=float, default=0.9, help="fine-tuning: the weight α of the KD term")
    parser.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    parser.add_argument("--out", default=None, help="run directory (default runs/prune-<method>)")


# -- checks and inputs ---------------------------------------------------------------------------------

def _parse_ints(text: str | None, argument: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ConfigError(argument, "comma-separated integers such as 1,3", text) from None


def _check_args(args: argparse.Namespace) -> dict[str, Any]:
    """Every argument checked before any work; returns the parsed pieces."""
    import math

    from kd_core.recipes import check_seed
    from kd_core.specs import check_trust

    if args.method not in METHODS:
        raise ConfigError("--method", f"one of {list(METHODS)}", args.method)
    check_trust(args.trust)
    if args.seed is not None:
        check_seed(args.seed)
    from kd_edge.prune.common import check_ratio

    if args.method in ("channels", "unet-inner"):
        check_ratio(args.ratio, "--ratio")
    layers = _parse_ints(args.layers, "--layers")
    if args.method == "layers" and not layers:
        raise ConfigError("--layers", "block indices (e.g. --layers 1,3) for --method layers", args.layers)
    if args.levels is not None and (isinstance(args.levels, bool) or args.levels < 1):
        raise ConfigError("--levels", "a positive integer", args.levels)
    if args.latency_iterations < 1:
        raise ConfigError("--latency-iterations", "a positive integer", args.latency_iterations)
    for name in ("train_epochs", "finetune_epochs"):
        value = getattr(args, name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"--{name.replace('_', '-')}", "an integer >= 0", value)
    if getattr(args, "digits", False) and getattr(args, "data", None):
        raise ConfigError("--digits", "either --digits or --data", args.data)
    if not (math.isfinite(args.finetune_lr) and args.finetune_lr > 0):
        raise ConfigError("--finetune-lr", "a finite learning rate > 0", args.finetune_lr)
    if not (math.isfinite(args.kd_temperature) and args.kd_temperature > 0):
        raise ConfigError("--kd-temperature", "a finite temperature > 0", args.kd_temperature)
    if not 0.0 <= args.kd_alpha <= 1.0:
        raise ConfigError("--kd-alpha", "a weight in [0, 1]", args.kd_alpha)
    if args.batch_size < 1:
        raise ConfigError("--batch-size", "an integer >= 1", args.batch_size)
    return {"layers": layers, "shape": _parse_ints(args.input_shape, "--input-shape")}


def _input_spec(source: dict[str, Any] | None, saved: dict[str, Any], shape: list[int] | None,
                model: Any = None) -> dict[str, Any]:
    """The example input: ``{"kind": "image"|"tokens", "shape": [...], "vocab_size": n}``."""
    from kd_edge.prune.builders import HF_BUILDER

    spec = dict(saved.get("example_input") or {})
    builder = source["builder"] if source else ""
    kwargs = source["kwargs"] if source else {}
    if builder == HF_BUILDER:
        spec.setdefault("kind", "tokens")
        spec.setdefault("shape", [1, 16])
        spec["vocab_size"] = int(kwargs["config"].get("vocab_size", 2))
    elif builder.endswith("resnet:build_resnet"):
        spec.setdefault("shape", [1, int(kwargs.get("in_channels", 3)), 32, 32])
    elif getattr(model, "input_shape", None) is not None:
        spec.setdefault("shape", [1, *(int(d) for d in model.input_shape)])
    if shape:
        spec["shape"] = shape
    spec.setdefault("kind", "image")
    if not spec.get("shape"):
        raise ConfigError("--input-shape", "the example input's shape, e.g. 1,3,32,32", None,
                          hint=f"no default is known for {builder or 'this model'}")
    return spec


def _example(spec: dict[str, Any]) -> ExampleInputs:
    import torch

    generator = torch.Generator().manual_seed(0)
    if spec["kind"] == "tokens":
        return {"input_ids": torch.randint(0, spec["vocab_size"], tuple(spec["shape"]), generator=generator)}
    return torch.randn(tuple(spec["shape"]), generator=generator)


# -- measuring -----------------------------------------------------------------------------------------

def _measure(models: dict[str, nn.Module], example: ExampleInputs, iterations: int, rounds: int = 3
             ) -> dict[str, dict[str, float]]:
    """Cost, size and CPU latency of each model. Latency is timed in ``rounds`` alternating rounds (so a
    noisy neighbour hits every model alike) and the round with the lowest p50 is kept per model."""
    from kd_core.metrics import measure_latency

    from kd_edge.prune.common import model_cost

    inputs = tuple(example.values()) if isinstance(example, dict) else (example,)
    best: dict[str, Any] = {}
    for _ in range(rounds):
        for name, model in models.items():
            latency = measure_latency(model, *inputs, warmup=3, iterations=iterations)
            if name not in best or latency.p50_ms < best[name].p50_ms:
                best[name] = latency
    out = {}
    for name, model in models.items():
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        out[name] = {**model_cost(model, example), "size_mb": size / 2**20, "latency_ms_p50": best[name].p50_ms,
                     "latency_ms_p90": best[name].p90_ms, "latency_ms_p99": best[name].p99_ms}
    return out


def _plot(before: dict[str, float], after: dict[str, float], delta: float, path: Path) -> Path:
    """Size (x) against latency (y); each point names its parameters and, when measured, its accuracy."""
    import matplotlib

    matplotlib.use("Agg")  # off-screen, before pyplot is imported
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    for label, row, colour in (("before", before, "tab:gray"), ("after", after, "tab:blue")):
        ax.scatter([row["size_mb"]], [row["latency_ms_p50"]], s=60, color=colour, label=label)
        note = f"{label}\n{row['params']:,} params"
        if "accuracy" in row:
            note += f"\naccuracy {100 * row['accuracy']:.2f}%"
        elif label == "after":
            note += f"\nmean |Δ output| {delta:.3g}"
        ax.annotate(note, (row["size_mb"], row["latency_ms_p50"]),
                    textcoords="offset points", xytext=(6, 4), fontsize="small")
    ax.set_xlabel("size of the weights (MiB)")
    ax.set_ylabel("CPU latency p50 (ms)")
    ax.set_title("pruning: size, latency" + (" and accuracy" if "accuracy" in after else ""))
    ax.grid(True, alpha=0.3)
    ax.margins(0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def _accuracy(model: nn.Module, data: EdgeData) -> float:
    import torch

    with torch.no_grad():
        return float((model.eval()(data.test_x).argmax(-1) == data.test_y).double().mean())


class _Items:
    """``{"input", "label"}`` items over tensors: what ``Distiller.fit`` reads."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self.x[index], "label": self.y[index]}


def distill_finetune(pruned: nn.Module, unpruned: nn.Module, data: EdgeData, out: Path, *, epochs: int,
                     lr: float = 1e-3, temperature: float = 4.0, alpha: float = 0.9, batch_size: int = 64,
                     seed: int = 0) -> nn.Module:
    """Fine-tune ``pruned`` by distillation from ``unpruned`` through kd-core's ``Distiller``: a ``FrozenTeacher``
    of the unpruned model, α·T²·KL(teacher ‖ student) + (1 − α)·CE on ``data``'s train split (AdamW, cosine
    decay), validated on its val split when it has one; the run (metrics, checkpoints) goes to ``out``."""
    from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, Term, adamw, cosine_lr
    from kd_core.losses import cross_entropy, kl_divergence

    objective = Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=alpha, temperature=temperature,
             direction="forward"),
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - alpha),
    )
    phase = Phase("finetune", objective, epochs=epochs, optimizer=adamw(lr), scheduler=cosine_lr)
    distiller = Distiller(pruned, [phase], teacher=FrozenTeacher(unpruned), backend=Backend(device="cpu"),
                          batch_size=batch_size, seed=seed)
    val = _Items(data.val_x, data.val_y) if data.val_x is not None and len(data.val_x) else None
    distiller.fit(_Items(data.train_x, data.train_y), val, out=out,
                  config={"role": "prune fine-tuning", "kd": {"temperature": temperature, "alpha": alpha},
                          "lr": lr, "data": data.source})
    return distiller.student.eval()


# -- the command ---------------------------------------------------------------------------------------

def _prune(args: argparse.Namespace, model: nn.Module, example: ExampleInputs, layers: list[int] | None
           ) -> tuple[nn.Module, Any]:
    from kd_edge.prune.layers import drop_layers
    from kd_edge.prune.structured import prune_channels
    from kd_edge.prune.unet_cut import cut_inner_layers, prune_inner_layers

    if args.method == "channels":
        return model, prune_channels(model, example, args.ratio, importance=args.importance,
                                     global_pruning=args.global_pruning)
    if args.method == "layers":
        return model, drop_layers(model, layers or [], container=args.container, example_inputs=example)
    if args.method == "unet-inner":
        return model, prune_inner_layers(model, example, args.ratio, levels=args.levels or 2,
                                         importance=args.importance)
    return cut_inner_layers(model, levels=args.levels or 1, example_inputs=example)


def _check_unet(model: nn.Module, method: str, levels: int | None) -> None:
    """The U-Net methods need a model that describes its U-Net (``kd_core.structure``) and enough levels."""
    from kd_core.structure import unet_structure

    from kd_edge.prune.unet_cut import check_levels

    try:
        depth = unet_structure(model).depth
    except ConfigError as err:
        raise ConfigError("--model", f"for --method {method}, a U-Net that describes itself (unet_structure(), "
                          "kd_core.structure)", type(model).__name__, hint=str(err)) from None
    default = 1 if method == "unet-cut" else 2
    check_levels(default if levels is None else levels, depth, 1 if method == "unet-cut" else 0, "--levels")


def _example_from(data: EdgeData | None, source: Any, model: nn.Module, saved: dict[str, Any],
                  shape: list[int] | None) -> tuple[dict[str, Any], ExampleInputs]:
    """The example input (spec and tensors): the data's first test inputs, else ``_input_spec``."""
    if data is None:
        spec = _input_spec(source, saved, shape, model)
        return spec, _example(spec)
    per_sample = [int(d) for d in data.test_x.shape[1:]]
    if shape and list(shape[1:]) != per_sample:
        raise ConfigError("--input-shape", f"the data's per-sample shape [batch, {', '.join(map(str, per_sample))}]",
                          shape)
    batch = shape[0] if shape else 1
    example = data.test_x[:batch]
    return {"kind": "image" if len(per_sample) == 3 else "tensor", "shape": [len(example), *per_sample]}, example


def run(args: argparse.Namespace) -> int:
    """Prune, fine-tune by distillation, save, measure and report; print where the run directory and report are."""
    import torch
    from kd_core.report import command_line, markdown_table, write_report
    from kd_core.runs import RunDir

    from kd_edge.data.digits import train_classifier
    from kd_edge.prune.common import call, main_output
    from kd_edge.prune.layers import check_indices, find_stack
    from kd_edge.prune.record import read_record, save_pruned, source_of
    from kd_edge.sources import resolve, trusted_builders

    parsed = _check_args(args)
    source = resolve(args, default_data=False)  # trust, paths, weights and data: all checked before any work
    model, data, trust = source.model, source.data, tuple(args.trust)
    assert model is not None
    saved = read_record(args.model).get("extra", {}) if source.argument == "--model" and Path(args.model).exists() \
        else {}
    spec, example = _example_from(data, source_of(model), model, saved, parsed["shape"])
    if args.method == "layers":
        check_indices(parsed["layers"], len(find_stack(model, args.container)[1]))
    if args.method in ("unet-inner", "unet-cut"):
        _check_unet(model, args.method, args.levels)
    out = Path(args.out) if args.out else default_out(f"prune-{args.method}", False)
    config = {"command": "prune", **{k: v for k, v in vars(args).items() if k != "func"}, "example_input": spec,
              "data_source": data.source if data is not None else None}
    run_dir = RunDir.create(out, config)
    notes: list[str] = list(source.notes)
    if data is not None and source.train:
        train_classifier(model, data.train_x, data.train_y, epochs=args.train_epochs, seed=args.seed or 0)
        notes.append(f"trained {args.train_epochs} epochs on the train split first (AdamW, cross-entropy)")
    original = copy.deepcopy(model).eval()
    model, summary = _prune(args, model, example, parsed["layers"])
    model.eval()
    accuracy: dict[str, float] = {}
    if data is not None:
        accuracy["before"] = _accuracy(original, data)
        accuracy["after pruning"] = _accuracy(model, data)
        if args.finetune_epochs:
            model = distill_finetune(model, copy.deepcopy(original), data, run_dir.path / "finetune",
                                     epochs=args.finetune_epochs, lr=args.finetune_lr,
                                     temperature=args.kd_temperature, alpha=args.kd_alpha,
                                     batch_size=args.batch_size, seed=args.seed or 0)
            notes.append(f"pruned model fine-tuned {args.finetune_epochs} epochs by distillation from the unpruned "
                         f"model (kd_core.Distiller, FrozenTeacher, {args.kd_alpha}·T²·KL + "
                         f"{1 - args.kd_alpha:.2g}·CE, T = {args.kd_temperature}, AdamW lr {args.finetune_lr}, "
                         f"cosine decay; run in `finetune/`)")
        accuracy["after"] = _accuracy(model, data)
    measured = _measure({"before": original, "after": model}, example, args.latency_iterations)
    before, after = measured["before"], measured["after"]
    if accuracy:
        before["accuracy"], after["accuracy"] = accuracy["before"], accuracy["after"]
    with torch.no_grad():
        delta = float((main_output(call(model, example)) - main_output(call(original, example))).abs().mean())
    extra = {"example_input": spec, **({"data": data.record} if data is not None else {})}
    with trusted_builders(trust):
        model_dir = save_pruned(model, run_dir.path / "model", trusted=trust, extra=extra)
    results = {"method": args.method, "summary": summary.as_dict(), "before": before, "after": after,
               "accuracy": accuracy, "notes": notes, "data": data.source if data is not None else None,
               "mean_abs_output_change": delta, "model_dir": str(model_dir), "example_input": spec}
    run_dir.write_json("results.json", results)
    plot = _plot(before, after, delta, run_dir.plots / "size_latency.png")
    rows = [{"model": name, "params": row["params"], "MACs": row["macs"], "size (MiB)": row["size_mb"],
             **({"accuracy %": 100 * row["accuracy"]} if "accuracy" in row else {}),
             "p50 (ms)": row["latency_ms_p50"], "p90 (ms)": row["latency_ms_p90"], "p99 (ms)": row["latency_ms_p99"]}
            for name, row in (("before", before), ("after", after))]
    if accuracy:
        accuracy_text = (f"Test accuracy ({data.source}, {len(data.test_y)} inputs): before "
                         f"{100 * accuracy['before']:.2f}%, right after pruning "
                         f"{100 * accuracy['after pruning']:.2f}%, final {100 * accuracy['after']:.2f}%. "
                         f"{'; '.join(n.rstrip('.') for n in notes)}.")
    else:
        accuracy_text = ("No task data (pass --run, --data or --digits for a classifier): see the output change "
                         "below.")
    settings = "\n".join(f"- {key}: {value}" for key, value in summary.settings.items())
    tuned = "after fine-tuning" if accuracy and args.finetune_epochs else "no fine-tuning"
    write_report(run_dir, f"kd-edge prune ({args.method})", [
        ("Command", f"```\n{command_line()}\n```"),
        ("Before and after", markdown_table(rows, digits=3)
         + f"\nParameters kept: {100 * summary.params_kept:.1f}%; MACs kept: {100 * summary.macs_kept:.1f}% "
           f"(torch.utils.flop_counter, matmuls and convolutions). CPU latency: eager PyTorch, batch "
           f"{spec['shape'][0]}, input {spec['shape']} ({spec['kind']}), {args.latency_iterations} timed runs "
           "per round, 3 rounds alternating between the two models, the round with the lowest p50 kept."),
        ("Accuracy", accuracy_text),
        ("Settings", settings or "-"),
        ("Output change", f"Mean |output after − output before| on the example input: {delta:.4g} ({tuned})."),
        ("Pruned model", f"`{model_dir}`: {RECORD} + model.safetensors; reload with "
                         "`kd_edge.prune.record.load_pruned(path)` (no pickle), or pass it to kd-edge export, "
                         "quantize and bench as `--model` (its data are recorded with it)."),
    ], plots=[("Size, latency and accuracy" if accuracy else "Size vs latency", plot)])
    print(f"run directory: {run_dir.path}")
    print(f"report: {run_dir.report}")
    return 0
