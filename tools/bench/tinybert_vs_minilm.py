"""TinyBERT-style students against the fine-tuned MiniLM-L6 gloss teacher, on CPU (issue #4).

For each student size (``LAYERSxHIDDENxFFN``) the ``tinybert-task`` recipe runs its ``tinybert`` arm (same
cached teacher, same data), and the script reads back from the study's ``results.json``: parameter ratio,
CPU latency ratio at batch 1 (the study's own timing; batch 32 at sequence 64 with ``--remeasure``) and
accuracy ratio on the gloss test split. The paper's headline point (TinyBERT4 vs BERT-base) is
≥ 7.5× fewer parameters, ≥ 9.4× lower latency, ≥ 96% of the teacher's accuracy; MiniLM is already
compact, so one size rarely meets all three: the sweep gives the curve and marks which targets hold.

    nice -n 10 .venv/bin/python tools/bench/tinybert_vs_minilm.py --sizes 4x192x768 4x96x384 2x48x192 \
        --out runs/bench/tinybert_vs_minilm [--set intermediate.epochs=2 ...]

Writes ``<out>/tinybert_vs_minilm.json`` (one row per size, ratios side by side) and prints a table.

Latency inside a training run is measured once, while the machine may be busy; ``--remeasure`` times the
saved students and the teacher again, interleaved in rounds (the lowest p50 of each kept), at ``--threads``,
and replaces the latency ratios (for a quiet machine, after the sweep):

    .venv/bin/python tools/bench/tinybert_vs_minilm.py --reuse --remeasure --threads 1 --sizes ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

TARGETS = {"params": 7.5, "latency_b1": 9.4, "latency_b32": 9.4, "accuracy": 0.96}
ARM = ["arms=[tinybert]", "seeds=[0]"]  # the TinyBERT arm alone, one seed, per size


def size(text: str) -> tuple[int, int, int]:
    """Parse ``"4x192x768"`` (layers × hidden × FFN width)."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected LAYERSxHIDDENxFFN such as 4x192x768, got {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


def plot_curve(summaries: list[Path], png: Path) -> Path:
    """Accuracy share against parameter and latency ratios for every row of the ``summaries`` JSON files, with
    the paper's TinyBERT4 point (7.5x, 9.4x, 96.8%) and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for path in summaries:
        data = json.loads(Path(path).read_text())
        label = "student embeddings: " + next((o.split("=", 1)[1] for o in data.get("overrides", [])
                                               if o.startswith("student.embeddings=")), "random")
        rows = sorted(data["rows"], key=lambda r: r["ratio_params"])
        for ax, key in zip(axes, ("ratio_params", "ratio_latency_b32"), strict=True):
            xs, ys = [r[key] for r in rows], [100 * r["ratio_accuracy"] for r in rows]
            ax.plot(xs, ys, marker="o", label=label)
            for r, x, y in zip(rows, xs, ys, strict=True):
                ax.annotate(r["student"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    for ax, (target, name) in zip(axes, ((TARGETS["params"], "fewer parameters (teacher / student)"),
                                         (TARGETS["latency_b32"], "lower CPU latency, batch 32, seq 64")),
                                  strict=True):
        ax.scatter([target], [96.8], marker="*", s=160, color="black", label="TinyBERT4 vs BERT-base (paper)")
        ax.axvline(target, color="grey", linestyle=":", linewidth=1)
        ax.axhline(100 * TARGETS["accuracy"], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"× {name}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("student accuracy, % of the MiniLM teacher's")
    axes[0].legend(fontsize="small")
    fig.suptitle("TinyBERT-style students of the fine-tuned MiniLM-L6 (WordNet glosses, 16 classes)")
    return save_figure(fig, png)


def remeasure(rows: list[dict], args: argparse.Namespace) -> None:
    """CPU p50 latency at batch 1 and 32 (sequence 64) of each saved student and the teacher, timed in
    interleaved rounds (the lowest p50 per model kept); rewrites each row's latency ratios in place."""
    import torch
    from kd_core.metrics import measure_latency
    from kd_core.recipes import RunContext, load_recipe
    from kd_nlu.models.student import load_student

    torch.set_num_threads(args.threads)
    method, config = load_recipe("tinybert-task", [*ARM, *args.overrides], domain="nlu")
    study = method.build(config).study(RunContext(out=args.out, device="cpu"))
    teacher = study.teacher_model(args.out).cpu().eval()  # the study's cached teacher
    models = {"teacher": teacher, **{r["student"]: load_student(args.out / r["student"] / "tinybert-seed0" / "model",
                                                                 num_labels=teacher.config.num_labels).eval()
                                     for r in rows}}
    generator = torch.Generator().manual_seed(0)
    inputs = {b: torch.randint(1000, int(teacher.config.vocab_size), (b, 64), generator=generator) for b in (1, 32)}
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.rounds):
        for batch, ids in inputs.items():
            for name, model in models.items():
                p50 = measure_latency(model, ids, warmup=2, iterations=10 if batch == 32 else 30).p50_ms
                best[name, batch] = min(best.get((name, batch), float("inf")), p50)
    for row in rows:
        for batch in (1, 32):
            row[f"student_latency_ms_b{batch}"] = best[row["student"], batch]
            row[f"teacher_latency_ms_b{batch}"] = best["teacher", batch]
            row[f"ratio_latency_b{batch}"] = best["teacher", batch] / best[row["student"], batch]
        row["targets_held"] = {k: row[f"ratio_{k}"] >= v for k, v in TARGETS.items()}
        row["latency"] = f"remeasured: {args.rounds} interleaved rounds, {args.threads} thread(s), lowest p50"
        print(f"{row['student']}: latency b1 {row['ratio_latency_b1']:.1f}x, b32 {row['ratio_latency_b32']:.1f}x "
              f"(teacher {best['teacher', 1]:.1f} / {best['teacher', 32]:.1f} ms)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=size, default=[size("4x192x768"), size("4x96x384"),
                                                                     size("2x48x192")])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tinybert_vs_minilm"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra tinybert-task overrides (key=value), applied to every size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--remeasure", action="store_true",
                        help="time the saved students and the teacher again, interleaved, and use those latencies")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for --remeasure")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --remeasure")
    parser.add_argument("--reuse", action="store_true",
                        help="read a size's results.json from an earlier run in --out instead of training it again")
    parser.add_argument("--plot", nargs="+", type=Path, metavar="JSON",
                        help="only draw the curve of these summary JSON files into --png, then stop")
    parser.add_argument("--png", type=Path, default=Path("docs/tinybert_vs_minilm.png"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.plot:
        print(f"wrote {plot_curve(args.plot, args.png)}")
        return 0

    from kd_core.recipes import RunContext, load_recipe

    rows = []
    for layers, hidden, ffn in args.sizes:
        name = f"{layers}x{hidden}x{ffn}"
        overrides = [*ARM, f"student.layers={layers}", f"student.hidden={hidden}", f"student.intermediate={ffn}",
                     *args.overrides]
        run = args.out / name
        if not (args.reuse and (run / "results.json").is_file()):
            method, config = load_recipe("tinybert-task", overrides, domain="nlu")
            run = method.build(config).run(RunContext(out=run, device=args.device, progress=False))
        result = json.loads((Path(run) / "results.json").read_text())
        student, teacher = result["arms"]["tinybert"], result["teacher"]
        accuracy = student["seeds"]["0"]["accuracy"]
        ratios = {"params": teacher["cost"]["params"] / student["cost"]["params"],
                  "latency_b1": teacher["cost"].get("latency_ms_p50", float("nan"))
                  / student["cost"].get("latency_ms_p50", float("nan")),
                  "latency_b32": float("nan"),  # measured by --remeasure only
                  "accuracy": accuracy / teacher["test"]["accuracy"]}
        rows.append({"student": name, "params": student["cost"]["params"], "teacher_params": teacher["cost"]["params"],
                     "student_accuracy": accuracy, "teacher_accuracy": teacher["test"]["accuracy"],
                     **{f"ratio_{k}": v for k, v in ratios.items()},
                     "targets_held": {k: ratios[k] >= v for k, v in TARGETS.items()}})
        print(f"{name}: params {ratios['params']:.1f}x, latency b1 {ratios['latency_b1']:.1f}x, "
              f"b32 {ratios['latency_b32']:.1f}x, accuracy {100 * ratios['accuracy']:.1f}% of the teacher",
              flush=True)
    if args.remeasure:
        remeasure(rows, args)
    summary = {"targets": TARGETS, "rows": rows, "overrides": args.overrides, "device": args.device,
               "all_three_at_once": [r["student"] for r in rows if all(r["targets_held"].values())]}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tinybert_vs_minilm.json"
    path.write_text(json.dumps(summary, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
