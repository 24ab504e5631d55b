"""U-Net pruning (Cut Inner Layers, Kim, Choi and Park, arXiv:2206.14658): sizes and quality at the same size.

What is measured
    The ``unet-inner`` study's pruned copies of the Pix2Pix teacher (depth-5 U-Net, the task of ``pix2pix-compact``'s
    repro: grey -> colour at 32 px, ``PRESET``): **inner** (75 % of the filters of the innermost 3 levels), **cut**
    (the innermost 2 levels removed, the branch mean folded into a bias) and **global** (global L1 filter pruning at
    the inner arm's parameter count). For each: parameters and MACs (one 32x32 image) against the teacher's, and
    the quality lost to the teacher's images on the test split (L1 and PSNR to the teacher's output), right after
    pruning (no fine-tuning) and after the study's KD fine-tune (``--epochs``; L1 to the target + L1 to the
    teacher's image), averaged over the run's seeds.

    The fine-tuned numbers come from a study run: ``--run DIR`` reads a finished one (e.g. the repro's
    ``runs/repro-unet-prune``), otherwise the study runs here on ``--seed`` (the sensitivity scan left out).

Targets
    inner >= 7x fewer parameters than the teacher; global within 2 % of the inner arm's parameter count (both
    sanity checks: exit 1 when they fail); reported: inner loses less to the teacher than global at that size
    (higher PSNR to the teacher's images), after pruning and after fine-tuning.

Run ``python tools/bench/unet_pruning.py --help``; results go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from bench_common import versions

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "unet_pruning.json"
#: pix2pix-compact's repro task and teacher (shared through the teacher cache).
PRESET = ["data.source=grey", "data.size=32", "data.crops=8", "teacher.epochs=30", "teacher.lr=0.002"]
ARMS = ("inner", "cut", "global")
MIN_COMPRESSION, MATCH_TOLERANCE = 7.0, 0.02


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="a finished unet-inner study to read (else run one)")
    parser.add_argument("--epochs", type=int, default=20, help="KD fine-tune epochs when the study runs here")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the study run here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the unet-inner recipe (a study run here)")
    parser.add_argument("--no-preset", action="store_true", help="the recipe's own task and teacher")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> Any:
    """The validated recipe: the finished run's own (``--run``), or the preset's."""
    from kd_core.recipes import load_recipe, methods, validate

    if args.run is not None:
        recipe = yaml.safe_load((args.run / "config.yaml").read_text())["recipe"]
        return validate(methods("generative")["unet-inner"], recipe)
    sets = [*([] if args.no_preset else PRESET), f"seeds=[{args.seed}]", f"finetune.epochs={args.epochs}",
            "arms=[inner, cut, global]", "sensitivity.enabled=false", "latency_iterations=0", *args.set]
    return load_recipe("unet-inner", sets, domain="generative")[1]


def _to_teacher(model: torch.nn.Module, teacher_images: torch.Tensor, batches: list[Any], task: Any
                ) -> dict[str, float]:
    """L1 and PSNR (dB) of ``model``'s test images to the teacher's."""
    from kd_generative.metrics import psnr
    from kd_generative.tasks.evaluate import generated_images

    images, _ = generated_images(model, batches, task.forward)
    return {"l1_teacher": float((images - teacher_images).abs().mean()), "psnr_teacher": float(psnr(images,
                                                                                                  teacher_images))}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or read) the study, score the pruned models before fine-tuning, and gather the figures."""
    from kd_core.recipes import RunContext, methods
    from kd_core.study import model_cost
    from kd_generative.methods.unet_prune import task
    from kd_generative.tasks.evaluate import generated_images
    from torch.utils.data import DataLoader

    config = _config(args)
    start = time.perf_counter()
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="unet-pruning-bench-")) / "run"
        methods("generative")["unet-inner"].build(config).run(RunContext(out=run, device=args.device))
    minutes = (time.perf_counter() - start) / 60
    results = json.loads((run / "results.json").read_text())
    built = task(config, RunContext(out=run, device=args.device))
    prepared = built.extras["unet_pruning"]
    teacher = built.teacher().cpu().eval()
    batches = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in b.items()}
               for b in DataLoader(built.data.test, batch_size=256, collate_fn=built.collate)]
    teacher_images, _ = generated_images(teacher, batches, built.forward)
    example = built.example_batch(1)
    teacher_cost = model_cost(teacher, example, 0, built.forward)
    arms: dict[str, Any] = {}
    for arm in [a for a in ARMS if a in results["arms"]]:
        model = prepared.model(arm)
        cost = model_cost(model, example, 0, built.forward)
        seeds = list(results["arms"][arm]["seeds"].values())
        arms[arm] = {"params": int(cost["params"]), "macs": int(cost["macs"]),
                     "compression": teacher_cost["params"] / cost["params"],
                     "mac_reduction": teacher_cost["macs"] / cost["macs"],
                     "pruned": _to_teacher(model.cpu(), teacher_images, batches, built),
                     "finetuned": {m: _mean([s.get(m, math.nan) for s in seeds])
                                   for m in ("l1_teacher", "psnr_teacher", "frechet_teacher", "psnr", "frechet")},
                     "seeds": len(seeds), "pruning": prepared.summary(arm)["settings"].get("params_error")}
    return {"run": str(run), "study_minutes": minutes if args.run is None else None,
            "settings": {"recipe": config.model_dump(), "epochs": config.finetune.epochs},
            "teacher": {"params": int(teacher_cost["params"]), "macs": int(teacher_cost["macs"]),
                        "test": results["teacher"]["test"]}, "arms": arms, "versions": versions()}


def verdicts(figures: dict[str, Any]) -> dict[str, Any]:
    """The targets: sanity checks (compression, matched size) and the reported quality comparison."""
    arms = figures["arms"]
    inner, glob = arms.get("inner"), arms.get("global")
    checks: dict[str, Any] = {}
    if inner:
        checks["inner_compression_at_least_7x"] = inner["compression"] >= MIN_COMPRESSION
    if inner and glob:
        checks["global_matches_inner_params"] = abs(glob["params"] - inner["params"]) <= MATCH_TOLERANCE * \
            inner["params"]
        for stage in ("pruned", "finetuned"):
            checks[f"inner_loses_less_than_global_{stage}"] = inner[stage]["psnr_teacher"] > glob[stage]["psnr_teacher"]
    return checks


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the JSON; exit 1 when a sanity check fails."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    figures = measure(args)
    figures["targets"] = verdicts(figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str))
    t = figures["teacher"]
    print(f"teacher: {t['params']:,} params, {t['macs']:,} MACs, test PSNR {t['test']['psnr']:.2f} dB")
    for arm, a in figures["arms"].items():
        print(f"{arm:>7}: {a['params']:,} params ({a['compression']:.1f}x fewer), {a['macs']:,} MACs "
              f"({a['mac_reduction']:.1f}x fewer); PSNR to the teacher's images {a['pruned']['psnr_teacher']:.2f} dB "
              f"pruned -> {a['finetuned']['psnr_teacher']:.2f} dB fine-tuned (over {a['seeds']} seed(s)); "
              f"Fréchet to the targets {a['finetuned']['frechet']:.3f}")
    print("targets:", json.dumps(figures["targets"]))
    print(f"results: {args.json}")
    sanity = [k for k in ("inner_compression_at_least_7x", "global_matches_inner_params")
              if figures["targets"].get(k) is False]
    return 1 if sanity else 0


if __name__ == "__main__":
    raise SystemExit(main())
