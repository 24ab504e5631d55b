"""Train large, then compress (S24), side study on CNNs (not the paper's claim): wide vs narrow CNN students on
real 8x8 digits at equal training compute, then channel-pruned (Torch-Pruning) and INT8-quantized (ONNX Runtime),
accuracy against bytes on disk. The paper's own claim (Transformer language models, unstructured pruning, low-bit
quantization) is tested by ``tools/repro/train_large_compress.py``.

Li, Wallace, Shen, Lin, Keutzer, Klein and Gonzalez, "Train Large, Then Compress: Rethinking Model Size for
Efficient Training and Inference of Transformers", ICML 2020 (arXiv:2002.11794).
The paper's two claims, checked here at a small scale on CNNs (not Transformers):
(i) under a fixed training budget, larger models converge faster (per step, and on GPUs per second), so train
large and stop early; (ii) large models are more robust to compression, so at equal compressed size a heavily
compressed large model beats a lightly compressed small one.

Protocol: every base (``SmallCNN`` widths) gets the same training FLOPs (forward + backward, counted with
``torch.utils.flop_counter``): the widest trains ``--reference-epochs`` epochs, a narrower one proportionally
more. Each trained model is exported to ONNX (dynamo) and compressed four ways: static INT8 (QDQ, ORT),
structured channel pruning at each ``--prune-ratios`` (``kd_edge.prune.structured``, then ``--finetune-epochs``
of fine-tuning, saved and reloaded through the pickle-free record), and pruning + INT8. Accuracy is measured on
held-out digits through ONNX Runtime, size is the ONNX file's bytes. Writes
``docs/results/train-large-compress-cnn.md`` and the plot beside it.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/train_large_compress_cnn.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
import torch
from kd_core.metrics import mean_std
from kd_core.plots import save_figure
from kd_core.report import markdown_table
from kd_edge.data.digits import DemoData, demo_data, train_classifier
from kd_edge.export import export_onnx, file_size, onnx_session, run_onnx
from kd_edge.prune.common import model_cost
from kd_edge.prune.record import build, load_pruned, save_pruned
from kd_edge.prune.structured import prune_channels
from kd_edge.quantize import quantize_static_int8
from repro_common import base_parser, shown
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

BUILDER = "kd_edge.models.small:SmallCNN"
#: name -> SmallCNN widths; the first is the widest (the budget's reference)
BASES: dict[str, tuple[int, ...]] = {"wide": (64, 128, 128), "medium": (32, 64, 64), "narrow": (16, 32, 32)}
BATCH = 64
PLOT = "train-large-compress-cnn.png"


# -- compute -------------------------------------------------------------------------------------------

def step_flops_per_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one training step (forward + backward of the cross-entropy loss) per sample, counted by
    ``torch.utils.flop_counter`` on the batch ``x``; gradients are cleared afterwards."""
    counter = FlopCounterMode(display=False)
    model.train()
    with counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    return counter.get_total_flops() / len(x)


def equal_compute_epochs(flops_per_sample: dict[str, float], reference: str, reference_epochs: int) -> dict[str, int]:
    """Epochs per model giving each the training FLOPs of ``reference_epochs`` epochs of ``reference`` (rounded
    to whole epochs, at least one)."""
    budget = flops_per_sample[reference] * reference_epochs
    return {name: max(1, round(budget / flops)) for name, flops in flops_per_sample.items()}


# -- one model -----------------------------------------------------------------------------------------

def onnx_accuracy(path: str | Path, data: DemoData) -> float:
    """Test accuracy of an ONNX model through ONNX Runtime."""
    predicted = run_onnx(onnx_session(path), data.test_x).argmax(axis=1)
    return float((predicted == data.test_y.numpy()).mean())


def _torch_accuracy(model: nn.Module, data: DemoData) -> float:
    with torch.inference_mode():
        return float((model(data.test_x).argmax(1) == data.test_y).double().mean())


def _point(base: str, compression: str, path: str | Path, data: DemoData, model: nn.Module,
           train_flops: float) -> dict[str, Any]:
    cost = model_cost(model, data.test_x[:1])
    return {"model": base, "compression": compression, "accuracy": onnx_accuracy(path, data),
            "bytes": file_size(path), "params": cost["params"], "macs": cost["macs"], "train_flops": train_flops}


def compress(base: str, model: nn.Module, data: DemoData, ratios: Sequence[float], finetune_epochs: int,
             train_flops: float, seed: int, work: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every (compression, accuracy, bytes) point of one trained model: FP32, INT8, and for each prune ratio
    pruned (+ fine-tune) and pruned + INT8; plus one reload check per pruned model (the record rebuilds it
    and gives the same outputs)."""
    example = data.test_x[:2]
    fp32 = export_onnx(model, example, work / f"{base}.onnx").path
    int8 = quantize_static_int8(fp32, work / f"{base}.int8.onnx", data.calib_x).path
    points = [_point(base, "none", fp32, data, model, train_flops),
              _point(base, "int8", int8, data, model, train_flops)]
    reloads = []
    for ratio in ratios:
        pruned = copy.deepcopy(model)
        prune_channels(pruned, example, ratio)
        flops = train_flops + finetune_epochs * len(data.train_y) * step_flops_per_sample(
            pruned, data.train_x[:BATCH], data.train_y[:BATCH])
        train_classifier(pruned, data.train_x, data.train_y, epochs=finetune_epochs, seed=seed + 1)
        folder = save_pruned(pruned, work / f"{base}-p{ratio:g}")
        reloaded = load_pruned(folder)
        with torch.inference_mode():
            difference = float((reloaded(data.test_x) - pruned(data.test_x)).abs().max())
        reloads.append({"model": base, "ratio": ratio, "max_abs_diff": difference, "folder": str(folder)})
        tag = f"prune{ratio:g}"
        path = export_onnx(reloaded, example, work / f"{base}.{tag}.onnx").path
        points.append(_point(base, tag, path, data, reloaded, flops))
        q = quantize_static_int8(path, work / f"{base}.{tag}.int8.onnx", data.calib_x).path
        points.append(_point(base, f"{tag}+int8", q, data, reloaded, flops))
    return points, reloads


def run_seed(seed: int, bases: dict[str, tuple[int, ...]], reference_epochs: int, ratios: Sequence[float],
             finetune_epochs: int, work: Path, test_size: int = 500) -> dict[str, Any]:
    """Train every base at equal compute on one seed (split and initialisation), compress, measure."""
    data = demo_data(calibration_size=128, test_size=test_size, seed=seed)
    models, flops = {}, {}
    for name, widths in bases.items():
        torch.manual_seed(seed)
        models[name] = build(BUILDER, widths=list(widths))
        flops[name] = step_flops_per_sample(models[name], data.train_x[:BATCH], data.train_y[:BATCH])
    reference = next(iter(bases))
    epochs = equal_compute_epochs(flops, reference, reference_epochs)
    points, reloads, training = [], [], {}
    for name, model in models.items():
        curve: list[dict[str, float]] = []

        def record(epoch: int, steps: int, model: nn.Module = model, curve: list = curve, name: str = name) -> None:
            curve.append({"epoch": epoch, "steps": steps, "accuracy": _torch_accuracy(model, data),
                          "flops": flops[name] * len(data.train_y) * epoch})

        start = time.perf_counter()
        train_classifier(model, data.train_x, data.train_y, epochs=epochs[name], seed=seed, on_epoch=record)
        seconds = time.perf_counter() - start
        total = flops[name] * len(data.train_y) * epochs[name]
        training[name] = {"widths": list(bases[name]), "epochs": epochs[name], "steps": curve[-1]["steps"],
                          "train_flops": total, "flops_per_sample_step": flops[name], "seconds": seconds,
                          "curve": curve}
        with tempfile.TemporaryDirectory(prefix=f"tlc-{name}-", dir=work) as folder:
            made, checked = compress(name, model, data, ratios, finetune_epochs, total, seed, Path(folder))
        points += made
        reloads += checked
    return {"seed": seed, "data": data.source, "train_size": len(data.train_y), "test_size": len(data.test_y),
            "training": training, "points": points, "reloads": reloads}


# -- across seeds ----------------------------------------------------------------------------------------

def summarise(seeds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of accuracy for every (model, compression) point; bytes and MACs from seed 0's
    models (they do not depend on the seed)."""
    keys = [(p["model"], p["compression"]) for p in seeds[0]["points"]]
    rows = []
    for model, compression in keys:
        found = [p for s in seeds for p in s["points"] if (p["model"], p["compression"]) == (model, compression)]
        accuracy, std = mean_std([p["accuracy"] for p in found])
        first = found[0]
        rows.append({"model": model, "compression": compression, "accuracy": accuracy, "accuracy_std": std,
                     "bytes": first["bytes"], "params": first["params"], "macs": first["macs"],
                     "train_flops": mean_std([p["train_flops"] for p in found])[0]})
    return rows


def accuracy_at_steps(curve: Sequence[dict[str, float]], steps: int) -> float:
    """Accuracy at the last recorded epoch with at most ``steps`` optimizer steps (the first epoch if none)."""
    before = [c for c in curve if c["steps"] <= steps]
    return (before[-1] if before else curve[0])["accuracy"]


def dominated_share(rows: Sequence[dict[str, Any]], larger: str, smaller: str) -> tuple[float, list[str]]:
    """Share of ``smaller``'s points for which some ``larger`` point is no bigger on disk and at least as
    accurate (mean over seeds), and the names of those points."""
    big = [r for r in rows if r["model"] == larger]
    small = [r for r in rows if r["model"] == smaller]
    beaten = [r["compression"] for r in small
              if any(b["bytes"] <= r["bytes"] and b["accuracy"] >= r["accuracy"] for b in big)]
    return len(beaten) / max(len(small), 1), beaten


def verdicts(seeds: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The expectations drawn from the paper's claims, each with whether it held and the numbers."""
    names = list(seeds[0]["training"])
    largest, smallest = names[0], names[-1]
    out = []
    steps = seeds[0]["training"][largest]["steps"]
    per_step = [(s["training"][largest]["curve"][-1]["accuracy"],
                 accuracy_at_steps(s["training"][smallest]["curve"], s["training"][largest]["steps"])) for s in seeds]
    big, small = (100 * mean_std(v)[0] for v in zip(*per_step, strict=True))
    out.append((f"(i) per step: after {steps} steps, {largest} is more accurate than {smallest}", big > small,
                f"{big:.2f} vs {small:.2f} % (PyTorch, test)"))
    acc = {r["model"]: 100 * r["accuracy"] for r in rows if r["compression"] == "none"}
    out.append((f"(i) per FLOP: at equal training compute {largest} (stopped early) is at least as accurate as "
                f"{smallest}", acc[largest] >= acc[smallest], f"{acc[largest]:.2f} vs {acc[smallest]:.2f} % (ORT)"))
    by = {(r["model"], r["compression"]): 100 * r["accuracy"] for r in rows}
    for compression in sorted({r["compression"] for r in rows} - {"none"}):
        drops = {name: by[(name, "none")] - by[(name, compression)] for name in (largest, smallest)}
        out.append((f"(ii) robustness: {largest} loses less accuracy than {smallest} to {compression}",
                    drops[largest] < drops[smallest],
                    f"{drops[largest]:+.2f} vs {drops[smallest]:+.2f} points lost"))
    for larger, smaller in itertools.pairwise(names):
        share, beaten = dominated_share(rows, larger, smaller)
        out.append((f"(ii) at equal or smaller size on disk, {larger}'s compressed points match or beat most of "
                    f"{smaller}'s points", share > 0.5,
                    f"{100 * share:.0f}% of {smaller}'s points dominated ({', '.join(beaten) or 'none'})"))
    return out


def reading(seeds: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> str:
    """The plain-language conclusion, written from the numbers (each clause follows what they show)."""
    names = list(seeds[0]["training"])
    largest, smallest = names[0], names[-1]
    by = {(r["model"], r["compression"]): 100 * r["accuracy"] for r in rows}
    checks = {what: ok for what, ok, _ in verdicts(seeds, rows)}
    per_step = next(ok for what, ok in checks.items() if what.startswith("(i) per step"))
    pruned = sorted(c for m, c in by if m == largest and c.startswith("prune") and "+" not in c)
    lost = {c: (by[(largest, "none")] - by[(largest, c)], by[(smallest, "none")] - by[(smallest, c)]) for c in pruned}
    robust = all(big < small for big, small in lost.values())
    drops = "; ".join(f"{c}: {big:+.2f} vs {small:+.2f} points" for c, (big, small) in lost.items())
    ahead = by[(largest, "none")] >= by[(smallest, "none")]
    frontier = all(ok for what, ok in checks.items() if "equal or smaller size" in what)
    best = {name: max((r for r in rows if r["model"] == name), key=lambda r: r["accuracy"]) for name in names}
    points = ", ".join(f"{name} {100 * best[name]['accuracy']:.2f} % at {best[name]['bytes'] / 1024:.0f} KiB "
                       f"({best[name]['compression']})" for name in names)
    int8 = max(abs(by[(m, "none")] - by[(m, "int8")]) for m in names)
    return (f"**Reading.** Per step the larger model {'learns faster' if per_step else 'does not learn faster'}, "
            f"and it is {'more' if robust else 'not more'} robust to channel pruning (accuracy lost, {largest} vs "
            f"{smallest}: {drops}). At equal training FLOPs the {largest} model, stopped early, is "
            f"{'ahead of' if ahead else 'still behind'} the {smallest} one that trained "
            f"{seeds[0]['training'][smallest]['epochs']} epochs ({by[(largest, 'none')]:.2f} vs "
            f"{by[(smallest, 'none')]:.2f} %). Each base's best point: {points}; compressed larger models "
            f"{'do' if frontier else 'do not'} dominate the smaller ones at equal size on disk. INT8 through ONNX "
            f"Runtime changes any model's accuracy by at most {int8:.2f} points.\n")


def plot_points(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy (mean ± std over seeds) against bytes on disk for every (model, compression) point, one plot."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {}
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] / 1024 for r in mine], [100 * r["accuracy"] for r in mine], color=colours[i % 10],
                alpha=0.35, linewidth=1)
        for r in mine:
            marker = markers.setdefault(r["compression"], "osD^vP*X"[len(markers) % 8])
            ax.errorbar(r["bytes"] / 1024, 100 * r["accuracy"], yerr=100 * r["accuracy_std"], fmt=marker,
                        color=colours[i % 10], markersize=7, capsize=2, markeredgecolor="black")
        ax.plot([], [], color=colours[i % 10], linewidth=6, label=model)
    for compression, marker in markers.items():
        ax.plot([], [], marker, color="gray", markeredgecolor="black", label=compression)
    ax.set_xscale("log")
    ax.set_xlabel("size on disk (KiB, ONNX file, log scale)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Train large, then compress: accuracy against size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2, loc="lower right")
    return save_figure(fig, path)


def run_experiment(seeds: Sequence[int], bases: dict[str, tuple[int, ...]], reference_epochs: int,
                   ratios: Sequence[float], finetune_epochs: int, plot_path: str | Path, test_size: int = 500,
                   work: str | Path | None = None) -> dict[str, Any]:
    """Every seed, the summary rows, the verdicts and the plot (written to ``plot_path``)."""
    with tempfile.TemporaryDirectory(prefix="train-large-compress-", dir=work) as folder:
        per_seed = [run_seed(seed, bases, reference_epochs, ratios, finetune_epochs, Path(folder), test_size)
                    for seed in seeds]
    rows = summarise(per_seed)
    plot = plot_points(rows, plot_path)
    return {"seeds": per_seed, "rows": rows, "verdicts": verdicts(per_seed, rows), "plot": str(plot),
            "reading": reading(per_seed, rows),
            "settings": {"bases": {k: list(v) for k, v in bases.items()}, "reference_epochs": reference_epochs,
                         "prune_ratios": list(ratios), "finetune_epochs": finetune_epochs, "batch_size": BATCH,
                         "test_size": test_size}}


# -- the page --------------------------------------------------------------------------------------------

def write_doc(doc: Path, result: dict[str, Any], command: str, minutes: float) -> None:
    """The results page: setting, training at equal compute, every point, the verdicts, the plot, the command."""
    settings, first = result["settings"], result["seeds"][0]
    training = []
    for name in settings["bases"]:
        runs = [s["training"][name] for s in result["seeds"]]
        training.append({"model": name, "widths": "-".join(map(str, settings["bases"][name])),
                         "FLOPs / sample-step (M)": runs[0]["flops_per_sample_step"] / 1e6,
                         "epochs": runs[0]["epochs"], "steps": runs[0]["steps"],
                         "training GFLOPs": runs[0]["train_flops"] / 1e9,
                         "compute / reference": runs[0]["train_flops"] / first["training"][next(iter(
                             settings["bases"]))]["train_flops"],
                         "train s (mean)": mean_std([r["seconds"] for r in runs])[0],
                         "accuracy % (PyTorch)": mean_std([100 * r["curve"][-1]["accuracy"] for r in runs])[0]})
    points = [{"model": r["model"], "compression": r["compression"], "size (KiB)": r["bytes"] / 1024,
               "accuracy %": f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}", "params": r["params"],
               "MACs": r["macs"], "training+fine-tune GFLOPs": r["train_flops"] / 1e9} for r in result["rows"]]
    reloads = [r for s in result["seeds"] for r in s["reloads"]]
    worst = max(r["max_abs_diff"] for r in reloads)
    lines = [f"| {'yes' if ok else '**no**'} | {what} | {numbers} |" for what, ok, numbers in result["verdicts"]]
    held = sum(ok for _, ok, _ in result["verdicts"])
    text = [
        "# Train large, then compress (S24), side study: CNNs on 8x8 digits, not the paper's claim\n",
        "The paper's claim, on Transformer language models, is tested in "
        "[train-large-compress.md](train-large-compress.md).\n",
        "Li et al., \"Train Large, Then Compress: Rethinking Model Size for Efficient Training and Inference of "
        "Transformers\", ICML 2020 (arXiv:2002.11794). Code: "
        "`tools/repro/train_large_compress_cnn.py` (kd-edge's pruning, export and ORT quantization); CI test: "
        "`tests/test_train_large_then_compress.py`.\n",
        "## Setting\n",
        f"- Data: {first['data']}, {first['train_size']} train / {first['test_size']} test images per seed (split "
        "and initialisation both follow the seed); 128 training images calibrate INT8.",
        f"- Students: `SmallCNN` (3×3 convs, global pool, Linear) of widths "
        f"{', '.join(f'{k} {v}' for k, v in settings['bases'].items())}; AdamW lr 2e-3, "
        f"batch {settings['batch_size']}.",
        f"- Equal training compute: the widest trains {settings['reference_epochs']} epochs, each other model as many "
        "epochs as the same FLOPs allow (forward + backward FLOPs of a training step, `torch.utils.flop_counter`, "
        "times the train-set size), rounded to whole epochs.",
        f"- Compression of each trained model: static INT8 through ONNX Runtime (QDQ, per-channel weights, "
        f"`kd_edge.quantize`); structured channel pruning (L1, per-layer ratio {settings['prune_ratios']}, "
        f"`kd_edge.prune.structured`, Torch-Pruning) followed by {settings['finetune_epochs']} epochs of fine-tuning, "
        "saved and reloaded through the pickle-free record (architecture.json + safetensors); and pruning + INT8.",
        "- Accuracy: test digits through ONNX Runtime; size: bytes of the ONNX file. Mean ± std over seeds "
        f"{[s['seed'] for s in result['seeds']]}.\n",
        "## Training at equal compute (seed 0's budget; accuracy mean over seeds)\n",
        markdown_table(training, digits=2),
        "## Every (model, compression) point\n",
        markdown_table(points, digits=2),
        f"![accuracy against size on disk]({Path(result['plot']).name})\n",
        f"Every pruned model was reloaded from its record; largest |reloaded − pruned| output difference over "
        f"{len(reloads)} reloads: {worst:.3g}.\n",
        "## Did the paper's direction hold?\n",
        "| held | expectation | numbers |\n|---|---|---|\n" + "\n".join(lines) + "\n",
        result["reading"],
        f"{held} of {len(lines)} expectations held. The paper's wall-clock advantage of large models relies on GPU "
        "parallelism; on a CPU the cost of a step grows almost linearly with FLOPs, so it is judged per step and "
        "per FLOP here, not per second (a CPU caveat). These are CNNs on 8×8 digits, not Transformers "
        "on text: a small-scale check of the direction, not of the paper's numbers.\n",
        "## Reproduce\n",
        f"```\n{command}\n```\n",
        f"Wall time {minutes:.1f} min on {platform.machine()} CPU (Python {platform.python_version()}), one torch "
        "thread, under `nice -n 10` on a shared machine.\n",
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(text))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "train-large-compress-cnn")
    parser.add_argument("--reference-epochs", type=int, default=8,
                        help="epochs of the widest model; the others get the same training FLOPs")
    parser.add_argument("--prune-ratios", type=float, nargs="+", default=[0.5, 0.75],
                        help="fractions of channels removed per layer")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="fine-tuning after each pruning")
    parser.add_argument("--bases", default=json.dumps({k: list(v) for k, v in BASES.items()}),
                        help="JSON {name: widths}, widest first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every seed, write the results page and its plot."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    bases = {name: tuple(widths) for name, widths in json.loads(args.bases).items()}
    result = run_experiment(args.seeds, bases, args.reference_epochs, args.prune_ratios, args.finetune_epochs,
                            args.doc.with_name(PLOT))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    command = " ".join(["OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/train_large_compress_cnn.py",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    write_doc(args.doc, result, command, (time.time() - started) / 60)
    for what, ok, numbers in result["verdicts"]:
        print(f"{'held' if ok else 'DID NOT HOLD'}: {what} ({numbers})")
    print(f"results: {shown(args.doc)}; every number: {shown(args.out / 'results.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
