"""Reproduce a small BD-KD experiment (Amara et al., arXiv:2212.12965) on noisy digits.

A (student CE only), B (DML), C (fixed 0.5/0.5 forward+reverse KL) and D (BD-KD) on sklearn 8x8 digits
with 20% symmetric label noise on train, MLP 64-512-512-10 teacher and 64-12-10 student trained together
from scratch, over several seeds. It runs the ``bd-kd`` plan with the other three variants as baselines
(the same as ``kd-vision distill --recipe bd-kd --set 'baselines=[ce,dml,fixed-mix-kd]'``) and writes
``docs/results/bd-kd.md``: mean ± std of student accuracy, student ECE and teacher accuracy, the command,
and whether the expected direction held.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/bd_kd.py --seeds 0 1 2 --epochs 80
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml
from kd_core.recipes import RunContext
from kd_core.report import markdown_table
from kd_vision.methods.bdkd import LABELS, BDKDConfig, BDKDPlan, summary_rows
from repro_common import base_parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "bd-kd", page_option="--results")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--noise-rate", type=float, default=0.2)
    parser.add_argument("--from-run", type=Path, default=None,
                        help="only rewrite the results page from a finished run directory of this tool")
    return parser.parse_args(argv)


def confidence_gap(calibration: dict) -> dict[str, tuple[float, float]]:
    """Mean top-1 confidence and accuracy of each model in a ``results.json`` calibration entry."""
    gaps = {}
    for name, value in calibration.items():
        n = sum(value["bin_count"])
        conf = sum(c * x for c, x in zip(value["bin_count"], value["bin_confidence"])) / n
        acc = sum(c * x for c, x in zip(value["bin_count"], value["bin_accuracy"])) / n
        gaps[name] = (conf, acc)
    return gaps


def main(argv: list[str] | None = None) -> int:
    """Run A/B/C/D over the seeds and write the results page."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    config = BDKDConfig(method="bd-kd", name="repro-bd-kd", baselines=["ce", "dml", "fixed-mix-kd"],
                        seeds=args.seeds, epochs=args.epochs,
                        data={"train_size": args.train_size, "noise_rate": args.noise_rate})
    if args.from_run is None:
        start = time.perf_counter()
        run = BDKDPlan(config).run(RunContext(out=args.out, device=args.device))
        minutes = (time.perf_counter() - start) / 60
        command = " ".join(["nice -n 10 .venv/bin/python", "tools/repro/bd_kd.py",
                            *map(shlex.quote, (argv if argv is not None else sys.argv[1:]))])
        (run / "repro.json").write_text(json.dumps({"minutes": minutes, "command": command}))
    else:
        run = args.from_run
        config = BDKDConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text())["recipe"])
        recorded = json.loads((run / "repro.json").read_text())
        minutes, command = recorded["minutes"], recorded["command"]
    results = json.loads((run / "results.json").read_text())
    gaps = confidence_gap(results["calibration"])
    reading = "; ".join(f"{name} {100 * conf:.1f}% vs {100 * acc:.1f}%" for name, (conf, acc) in gaps.items())
    c = config
    legend = ", ".join(f"{label.split(' · ')[0]} = {label.split(' · ')[1]}" for label in LABELS.values())
    page = f"""# BD-KD on noisy digits: A/B/C/D

Amara et al., "BD-KD: Balancing the Divergences for Online Knowledge Distillation", arXiv:2212.12965
(a small CPU version of its experiment); method: `kd_vision.methods.bdkd`.

## Setting

{c.data.source} digits: {c.data.train_size} train samples with {100 * c.data.noise_rate:.0f}% symmetric label
noise (exactly {results['noise']['flipped']} labels flipped, redrawn per seed), {c.data.val_size} clean val
(monitoring only), {c.data.test_size} clean test. Teacher `{c.teacher.model}` ({results['params']['teacher']:,}
parameters) and student `{c.student.model}` ({results['params']['student']:,} parameters), both from scratch,
trained together for {c.epochs} epochs, AdamW (no weight decay) at a constant lr {c.student.lr}, batch
{c.batch_size}. τ = {c.kd.temperature}, λ_S = λ_T = {c.kd.student_weight}, BD-KD sharpness k = {c.kd.sharpness}.
The teacher's loss is DML's CE + λ_T·τ²·KL(p_S ‖ p_T) in B, C and D (v1 of the paper). Every model is its last
epoch; ECE uses 15 equal-width bins over the whole test split. Mean ± std (sample std) over seeds {c.seeds}.
{legend}.

## Results (clean test split)

{markdown_table(summary_rows(results))}
## Verdict

{results['verdict']}

## Reading

Mean top-1 confidence vs accuracy on the test split (seed {c.seeds[0]}): {reading}. Every model is
*under*-confident: trained on labels of which 20% are wrong, it learns to put roughly 80% on the likely class,
and the clean test labels are then right more often than it says. Most of the ECE here is that gap, so whatever
sharpens the student lowers it; the reverse (mode-seeking) KL does, whether mixed per sample (D) or at a fixed
0.5/0.5 (C). This setting separates "some reverse KL" (C, D) from "forward KL only" (B), not D's entropy-gap
weights from a fixed mix.

## Per seed

{markdown_table([{"variant": LABELS[v], "seed": s, "student acc %": 100 * r["student"]["accuracy"],
                  "student ECE %": 100 * r["student"]["ece"],
                  "teacher acc %": 100 * r["teacher"]["accuracy"] if r["teacher"] else "—"}
                 for v in results["variants"] for s, r in results["seeds"][v].items()], digits=2)}
## Reproduce

```
OMP_NUM_THREADS=1 {command}
```

Wall time: {minutes:.1f} min on a shared 2-core CPU (other jobs running). The run directory ({run.name}/ under
`runs/`) holds `report.md`, `results.json`, the reliability diagrams of seed {c.seeds[0]} (`plots/reliability.png`)
and one sub-run per variant and seed.
"""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(page)
    print(f"run directory: {run}\nresults: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
