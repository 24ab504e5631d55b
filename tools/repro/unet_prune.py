"""Reproduce Cut Inner Layers on a Pix2Pix U-Net: inner-layer pruning and cutting against global L1 pruning at the
same size, each KD fine-tuned from the unpruned generator, over paired seeds.

B.-K. Kim, S. Choi and H. Park, "Cut Inner Layers: A Structured Pruning Strategy for Efficient U-Net GANs",
arXiv:2206.14658, 2022. The spec's small experiment (depth-5 U-Net): the inner layers are at least 3× less
sensitive than the outer ones (per-layer scan, 50 % and 75 % of one layer's filters pruned, no fine-tuning), and
the inner and cut students beat global pruning on the Fréchet distance over 3 seeds, at ≥ 7× fewer parameters than
the teacher. This runs the ``unet-inner`` recipe's study (the Pix2Pix teacher is trained once and cached) and writes
``docs/results/unet-prune.md``: the sensitivity scan, the paired comparisons with 95 % t-intervals and verdicts, the
sizes, the image quality, a sample grid and the criteria, one by one.

    nice -n 10 .venv/bin/python tools/repro/unet_prune.py --seeds 0 1 2 [--no-preset] [--set key=value ...]

By default the task is ``pix2pix-compact``'s repro setting (``PRESET``: grey → colour at 32 px, 8 crops per photo, a
teacher trained 30 epochs at Adam 2e-3, so both repros share one cached teacher, and one that clears the gate
against trivial baselines); ``--no-preset`` runs the recipe as shipped (edges → colour, whose 10-epoch teacher does
not clear it). About 2 minutes per seed on a busy 2-core CPU once the teacher is cached.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from kd_core.datacache import data_home
from repro_common import base_parser, copy_plots, run_recipe_study, study_page

#: pix2pix-compact's repro task and teacher (grey -> colour, 32 px, 8 crops, teacher 30 epochs at Adam 2e-3).
PRESET = ["data.source=grey", "data.size=32", "data.crops=8", "teacher.epochs=30", "teacher.lr=0.002"]
#: The spec's thresholds: inner/outer sensitivity ratio, compression of the inner arm.
MAX_SENSITIVITY_RATIO, MIN_COMPRESSION = 1 / 3, 7.0

INTRO = """B.-K. Kim, S. Choi and H. Park, "Cut Inner Layers: A Structured Pruning Strategy for Efficient U-Net GANs",
arXiv:2206.14658, 2022. Method: `kd_generative.methods.unet_prune` (the pruning itself is kd-edge's, reached through
the `kd.unet_pruning` plugins of `kd_core.unet_pruning`). The unpruned generator is the task's Pix2Pix teacher
(depth-5 U-Net, trained once with L1 + cGAN and cached). Before the arms, a per-layer sensitivity scan of the teacher
(one layer at a time loses 50 % or 75 % of its filters, L1, no fine-tuning). Arms, each a pruned copy of the teacher
fine-tuned by KD from it (L1 to the target + L1 to the teacher's image, no discriminator), with the same data order
per seed: **inner** (75 % of the filters of the innermost 3 levels), **cut** (the innermost 2 levels removed, the
removed branch's mean folded into a bias) and **global** (global L1 filter pruning, filters ranked across layers, at
the inner arm's parameter count). Headline: the Fréchet distance to the targets in the toolkit's own feature space
(an FID stand-in, lower is better)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "unet-prune")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the unet-inner recipe")
    parser.add_argument("--no-preset", action="store_true", help="run the recipe's own task and teacher")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    """The recipe fields this run changes."""
    return [*([] if args.no_preset else PRESET), f"seeds={json.dumps(args.seeds)}", "arms=[inner, cut, global]",
            "name=repro-unet-prune", *args.set]


def _comparison(results: dict[str, Any], a: str, b: str) -> str:
    for row in results["comparisons"]:
        if (row["a"], row["b"]) == (a, b):
            interval = "n/a (one seed)" if row["low"] is None else f"[{row['low']:+.4g}, {row['high']:+.4g}]"
            return (f"{a} − {b} ({row['metric']}, lower is better): {row['mean']:+.4g}, 95 % CI {interval}, "
                    f"**{row['verdict']}**")
    return f"{a} − {b}: not compared"


def criteria(results: dict[str, Any]) -> str:
    """The spec's pass criteria, one line each, from the study's ``results.json``."""
    lines = []
    scan = results.get("sensitivity", {})
    ratios = {k: v for k, v in scan.get("inner_outer_ratio", {}).items()}
    if ratios:
        worst = max(ratios.values())
        shown = ", ".join(f"{v:.3f} at r = {float(k):.0%}" for k, v in ratios.items())
        lines.append(f"- inner/outer sensitivity ratio: {shown} (claimed ≤ {MAX_SENSITIVITY_RATIO:.3f}, i.e. the "
                     f"innermost {scan.get('inner_levels')} levels ≥ 3× less sensitive): "
                     f"**{'met' if worst <= MAX_SENSITIVITY_RATIO else 'not met'}**;")
    teacher = results["teacher"]["cost"]["params"]
    sizes = {arm: results["arms"][arm]["cost"]["params"] for arm in results["arms"]}
    if "inner" in sizes:
        times = teacher / sizes["inner"]
        lines.append(f"- compression: teacher {teacher:,} parameters, "
                     + ", ".join(f"{arm} {p:,} ({teacher / p:.1f}×)" for arm, p in sizes.items())
                     + f"; inner ≥ {MIN_COMPRESSION:g}×: **{'met' if times >= MIN_COMPRESSION else 'not met'}**;")
    lines.append(f"- {_comparison(results, 'inner', 'global')} (claimed < 0: inner beats global);")
    lines.append(f"- {_comparison(results, 'cut', 'global')} (claimed < 0: cut beats global).")
    macs = {arm: results["teacher"]["cost"]["macs"] / results["arms"][arm]["cost"]["macs"] for arm in sizes
            if results["arms"][arm]["cost"].get("macs")}
    if macs:
        lines.append("\nThe claim is about parameters. MACs fall less for inner pruning and the cut, which keep the "
                     "outer, full-resolution layers that global pruning thins: "
                     + ", ".join(f"{arm} {m:.1f}× fewer MACs" for arm, m in macs.items()) + " than the teacher.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the three arms over the seeds and write the results page."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run, minutes = run_recipe_study("unet-inner", "generative", overrides(args), args.out, args.device)
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    command = f"nice -n 10 .venv/bin/python tools/repro/unet_prune.py {argv_text}".rstrip()
    page = study_page(run, "Cut Inner Layers: inner pruning and cutting vs global pruning of a Pix2Pix U-Net", INTRO,
                      command, minutes, args.out)
    results = json.loads((Path(run) / "results.json").read_text())
    page = page.replace("\n## Reproduce", f"\n## The spec's criteria\n\n{criteria(results)}\n\n## Reproduce", 1)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    page = page.replace(str(data_home()), "$KD_DATA_HOME")
    args.doc.write_text(copy_plots(page, Path(run), args.doc))
    print(f"results: {args.doc}\nrun: {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
