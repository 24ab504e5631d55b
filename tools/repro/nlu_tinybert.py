"""Reproduce TinyBERT task distillation with its controls on WordNet glosses (Jiao et al., 2020).

Runs the shipped ``tinybert-task`` study (the same as ``kd-nlu distill --recipe tinybert-task --set ...``): the
MiniLM-L6 teacher fine-tuned on the glosses and cached, then four arms from the same student initialisation
per seed, for the same number of epochs on the same augmented texts: **tinybert** (intermediate layers, then
the prediction layer), **kd** (prediction layer alone), **scratch** (cross-entropy) and
**intermediate-then-ce**. ``--general RUN/general-seed0/model`` starts every arm from a ``tinybert-general``
student instead of random weights (run ``tinybert-general`` first, with the same ``--student`` shape). Writes
``docs/results/nlu-tinybert.md`` from the study's report: the teacher's quality, whether plain KD beats scratch,
and every paired comparison with its 95 % t-interval and verdict.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_tinybert.py --student 4x192x768
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch
from kd_core.datacache import data_home
from repro_common import base_parser, run_recipe_study, study_page


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "nlu-tinybert", run_name="repro-nlu-tinybert")
    parser.add_argument("--student", default="4x192x768", help="LAYERSxHIDDENxFFN (hidden a multiple of 12)")
    parser.add_argument("--epochs", type=int, default=6, help="every arm's epochs")
    parser.add_argument("--intermediate-epochs", type=int, default=3, help="of which the intermediate stage")
    parser.add_argument("--copies", type=int, default=2, help="augmented copies per training gloss")
    parser.add_argument("--general", default=None, help="a tinybert-general student folder to start from")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe overrides (key=value), after the script's own")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    """The recipe fields this run changes."""
    layers, hidden, ffn = (int(v) for v in args.student.split("x"))
    student = ([f"student.model=hf:{args.general}"] if args.general else
               ["student.model=small", f"student.layers={layers}", f"student.hidden={hidden}",
                f"student.intermediate={ffn}"])
    return [f"seeds={args.seeds}", *student, f"student.epochs={args.epochs}",
            f"intermediate.epochs={args.intermediate_epochs}", f"augment.copies={args.copies}",
            "name=repro-nlu-tinybert", *args.overrides]


def main(argv: list[str] | None = None) -> int:
    """Run the study over the seeds and write the results page."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    run, minutes = run_recipe_study("tinybert-task", "nlu", overrides(args), args.out, args.device)
    command = " ".join(["HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python", "tools/repro/nlu_tinybert.py",
                        *map(shlex.quote, (argv if argv is not None else sys.argv[1:]))])
    start = f"the tinybert-general student `{args.general}`" if args.general else f"a random {args.student} BERT"
    intro = f"""Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of EMNLP 2020,
arXiv:1909.10351; method: `kd_nlu.methods.tinybert`, losses in `kd_nlu.tinybert.objectives`. Every arm starts
from {start} (the same initialisation per seed) and trains {args.epochs} epochs on the same augmented glosses
({args.copies} copies each): **tinybert** ({args.intermediate_epochs} epochs of intermediate-layer distillation,
then prediction-layer distillation; never a gold label), **kd** (prediction layer alone), **scratch**
(cross-entropy on the labels) and **intermediate-then-ce**. Paper (TinyBERT₄ vs BERT-base on GLUE): 7.5×
smaller, 9.4× faster, 96.8 % of the teacher."""
    page = study_page(run, f"TinyBERT task distillation and its controls (WordNet glosses, student {args.student})",
                      intro, command, minutes, args.out)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page.replace(str(data_home()), "$KD_DATA_HOME"))
    print(f"run directory: {run}\nresults: {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
