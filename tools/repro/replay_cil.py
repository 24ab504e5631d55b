"""Reproduce the generative-replay CIL claim (Jodelet et al., arXiv:2306.17560) on 8x8 digits: A/B/C/D.

Variants (see ``kd_vision.cil.training``): (A) fine-tune; (B) 5 exemplars per class + old-class logit KD
from the frozen previous model; (C) B + generated old-class images in KD only; (D) B + generated images in
both KD and CE replay (the paper). The generator is a per-class Gaussian mixture fitted once on a split
disjoint from the stream and frozen (an offline stand-in for Stable Diffusion). The expected order is
D > C > B > A in average incremental accuracy.

It runs the ``replay-cil`` recipe (with ``variant=D``, ``compare=[A, B, C]`` and the seeds given) through
its plan, so the numbers come from exactly the code the CLI runs, then writes a results page with the
table, the per-seed orderings and the exact command::

    nice -n 10 .venv/bin/python tools/repro/replay_cil.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time

import torch
from kd_core.metrics import format_mean_std
from kd_core.recipes import RunContext, load_recipe
from kd_core.report import markdown_table
from repro_common import base_parser

ORDER = ["D", "C", "B", "A"]
METRICS = {"average_incremental_accuracy": "avg incremental acc %", "final_accuracy": "final acc %",
           "forgetting": "forgetting (pts, lower is better)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "replay-cil", seeds=(0, 1, 2, 3, 4), run_name="replay-cil-repro")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe override key=value (repeatable)")
    return parser.parse_args(argv)


def holds(means: dict[str, float], higher_is_better: bool = True) -> bool:
    """Whether D > C > B > A (or D < C < B < A for a lower-is-better metric)."""
    values = [means[v] for v in ORDER]
    pairs = list(itertools.pairwise(values))
    return all(a > b for a, b in pairs) if higher_is_better else all(a < b for a, b in pairs)


def page(results: dict, command: str, minutes: float, config: dict) -> str:
    """The markdown results page."""
    variants = results["variants"]
    rows = [{"variant": f"{v}: {variants[v]['description']}",
             **{label: format_mean_std([100 * r[k] for r in variants[v]["seeds"].values()])
                for k, label in METRICS.items()}} for v in ORDER]
    seeds = list(variants["D"]["seeds"])
    per_seed = []
    for s in seeds:
        acc = {v: variants[v]["seeds"][s]["average_incremental_accuracy"] for v in ORDER}
        per_seed.append({"seed": s, **{f"{v} avg inc %": 100 * acc[v] for v in ORDER},
                         "D > C > B > A": "yes" if holds(acc) else "no"})
    mean_acc = {v: variants[v]["mean"]["average_incremental_accuracy"] for v in ORDER}
    mean_final = {v: variants[v]["mean"]["final_accuracy"] for v in ORDER}
    mean_forget = {v: variants[v]["mean"]["forgetting"] for v in ORDER}
    verdict = (f"- average incremental accuracy: D > C > B > A **{'held' if holds(mean_acc) else 'did not hold'}** "
               f"(means), and held in {sum(r['D > C > B > A'] == 'yes' for r in per_seed)} of {len(seeds)} seeds;\n"
               f"- final accuracy: **{'held' if holds(mean_final) else 'did not hold'}**;\n"
               f"- forgetting (D < C < B < A): **{'held' if holds(mean_forget, False) else 'did not hold'}**.\n")
    c = config
    return (
        "# replay-cil: generative replay + distillation for class-incremental digits\n\n"
        "Paper: Q. Jodelet, X. Liu, Y. J. Phua, T. Murata, \"Class-Incremental Learning using Diffusion Model "
        "for Distillation and Replay\", arXiv:2306.17560 (a small CPU "
        "version of its experiment).\n\n"
        "## Setting\n\n"
        f"scikit-learn 8x8 digits ({c['data']['source']}), three disjoint stratified splits: "
        f"{c['data']['generator_size']} images fit the generator, {c['data']['train_size']} form the stream, "
        f"{c['data']['test_size']} test. 5 tasks of 2 classes (order {c['stream']['class_order']}), fixed 10-way "
        "head with unseen classes masked. Model `" + c["train"]["model"] + f"`, {c['train']['epochs']} epochs per "
        f"task, AdamW lr {c['train']['lr']} with cosine decay, batch {c['train']['batch_size']}, every task one "
        "`Distiller` fit. Memory: "
        f"{c['memory']['per_class']} random exemplars per class. KD: old-class logits of the frozen previous model, "
        f"T = {c['kd']['temperature']}, λ = {c['kd']['weight']}. Generator: per-class Gaussian mixture "
        f"({c['generator']['components']} diagonal components), fitted once before the stream and frozen; "
        f"{c['generator']['per_class']} images per old class at each task.\n\n"
        "Metrics (`kd_vision.cil.metrics`): a[i][j] = accuracy on task j's test images after task i, predicting "
        "among all classes seen so far; average incremental accuracy = mean over tasks of the mean accuracy on "
        "the tasks seen so far (iCaRL); final accuracy = that mean after the last task; forgetting = mean over "
        "old tasks of (best earlier accuracy − final accuracy) (Chaudhry et al. 2018).\n\n"
        f"## Results (test split, mean ± std over {len(seeds)} seeds)\n\n" + markdown_table(rows) + "\n"
        "## Did D > C > B > A hold?\n\n" + verdict + "\n"
        "### Per seed (average incremental accuracy)\n\n" + markdown_table(per_seed, digits=1) + "\n"
        "## Caveats\n\n"
        "- The stand-in generator is far closer to the test distribution than Stable Diffusion is to CIFAR or "
        "ImageNet: it is fitted on real digits of every class from the same source (only a disjoint split), and "
        "on 8x8 images a 5-component diagonal mixture per class draws convincing digits. D therefore comes close "
        "to joint training; the size of the D − C and D − B gaps says more about this generator than about the "
        "paper's. On 28x28 MNIST the mixture's samples are much noisier: in one development run (seed 0, "
        "mnist5k, 2,000 generator / 1,500 stream / 1,000 test images, 10 epochs per task, not the recipe) "
        "average incremental accuracy was D 63.1%, C 47.1%, B 43.5%, A 43.5%.\n"
        "- B barely beats A: with 5 exemplars per class against ~140 current images and a plain softmax head, "
        "the new classes' bias dominates, and old-class logit KD does not constrain old-vs-new logits. The "
        "paper's base methods (PODNet-style, cosine/NME classifiers, 20 exemplars) are stronger baselines.\n"
        "- Exemplars are chosen at random (not herding); generated images are not filtered by f_{t-1}'s "
        "confidence nor down-weighted in CE; they are drawn afresh for every task.\n\n"
        "## Command\n\n"
        f"```\n{command}\n```\n\n"
        f"Wall time: {minutes:.1f} min on 2 CPU cores shared with other jobs (`nice -n 10`), device cpu. "
        "The run directory (per-task checkpoints, metrics, report.md, plots/accuracy_per_task.png) is the "
        "`--out` folder; it is not committed.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the four variants over the seeds and write the results page."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = "[" + ",".join(str(s) for s in args.seeds) + "]"
    overrides = ["variant=D", "compare=[A,B,C]", f"seeds={seeds}", *args.overrides]
    method, config = load_recipe("replay-cil", overrides, domain="vision")
    start = time.perf_counter()
    run = method.build(config).run(RunContext(out=args.out, device=args.device))
    minutes = (time.perf_counter() - start) / 60
    results = json.loads((run / "results.json").read_text())
    command = "nice -n 10 .venv/bin/python tools/repro/replay_cil.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page(results, command.strip(), minutes, config.model_dump()))
    print(f"results page: {args.doc}\nrun: {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
