"""Shared by the kd-nlu repro scripts: run a shipped recipe over seeds, then write its results page.

Study recipes (``annealing-kd``, ``dcs``, ``rl-multi-teacher``, ``ambiguity-*``) go through ``study_script``: the
recipe runs as ``kd-nlu distill --recipe NAME --set ...`` would, and the page is the paper and setting, then
the study's own report (the teacher's quality, plain KD against scratch, every paired comparison with its 95 %
interval and verdict, the method's sections), then the exact command. Other scripts name their claims and
test each on ``results.json`` (``Claim``, ``write_page``). Pages go to ``docs/results/nlu-<recipe>.md``. Run the
scripts as ``python tools/repro/nlu_<name>.py`` (this folder is then on ``sys.path``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kd_core.datacache import data_home
from kd_core.report import markdown_table
from repro_common import ROOT, base_parser, run_recipe_study, shown, study_page


@dataclass(frozen=True)
class Claim:
    """One direction the paper reports, with the two numbers compared and whether it held here."""

    text: str
    ours: float
    reference: float
    held: bool

    def row(self) -> dict[str, Any]:
        """A results-table row."""
        return {"paper's claim": self.text, "here": f"{self.ours:.4f} vs {self.reference:.4f}",
                "held": "yes" if self.held else "**no**"}


def per_seed_rows(by_arm: dict[str, dict[str, dict[str, float]]], keys: Sequence[tuple[str, float]]) -> list[dict]:
    """One row per arm and seed with ``keys`` (name, scale)."""
    return [{"arm": arm, "seed": seed, **{k: round(scale * float(r[k]), 4) for k, scale in keys}}
            for arm, by_seed in by_arm.items() for seed, r in by_seed.items()]


def parse(doc: str | None, name: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
          ) -> Callable[[list[str] | None], argparse.Namespace]:
    """A parser for a script: the shared options, ``--set`` overrides and the results page ``nlu-NAME.md``."""

    def run(argv: list[str] | None) -> argparse.Namespace:
        parser = base_parser(doc, f"nlu-{name}", run_name=f"repro-nlu-{name}")
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            help="extra recipe overrides (key=value), after the script's own")
        if extra is not None:
            extra(parser)
        return parser.parse_args(argv)

    return run


def report_sections(run: Path, keep: Sequence[str] = ("Summary", "Results")) -> str:
    """The sections of ``run/report.md`` whose titles start with one of ``keep``, one heading level down."""
    text = (run / "report.md").read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    chosen = [p for p in parts if p.split("\n", 1)[0].strip().startswith(tuple(keep))]
    return "".join(f"### {p.rstrip()}\n\n" for p in chosen)


def command(script: str, argv: list[str] | None) -> str:
    """The exact command that reproduces this page."""
    given = argv if argv is not None else sys.argv[1:]
    return " ".join(["HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python", f"tools/repro/{script}",
                     *map(shlex.quote, given)])


def write_page(args: argparse.Namespace, *, title: str, citation: str, setting: str, run: Path,
               claims: Sequence[Claim], per_seed: list[dict], script: str, argv: list[str] | None,
               minutes: float, notes: str = "") -> Path:
    """Write the results page and return its path."""
    held = sum(c.held for c in claims)
    verdict = ("every claimed direction held" if held == len(claims) else
               "no claimed direction held" if held == 0 else f"{held} of {len(claims)} claimed directions held")
    body = report_sections(run).replace(str(data_home()), "$KD_DATA_HOME")
    page = f"""# {title}

{citation}

## Setting

{setting}

## Verdict: {verdict}

{markdown_table([c.row() for c in claims])}
Means over seeds {args.seeds}; each claim compares the arms' means (the per-seed table shows the spread).
{notes}
## The run's report

{body}
## Per seed

{markdown_table(per_seed)}
## Reproduce

```
{command(script, argv)}
```

Wall time: {minutes:.1f} min on a shared 2-core CPU (other jobs running), `--threads {args.threads}`. The run
directory (`{shown(args.out)}`) holds `report.md`, `results.json`, plots and one sub-run per arm and seed.
"""
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page)
    print(f"run directory: {run}\nresults: {args.doc}")
    return args.doc


def study_script(doc: str | None, recipe: str, *, title: str, intro: str, script: str, argv: list[str] | None,
                 overrides: Callable[[argparse.Namespace], list[str]] = lambda args: [],
                 extra: Callable[[argparse.ArgumentParser], None] | None = None) -> Path:
    """Run the study recipe ``recipe`` over ``--seeds`` with ``overrides(args)`` and ``--set``, then write its
    results page (``title``, ``intro``, the study's report, the command) and return the run directory."""
    args = parse(doc, recipe, extra)(argv)
    torch.set_num_threads(args.threads)
    settings = [f"seeds={args.seeds}", f"name=repro-nlu-{recipe}", *overrides(args), *args.overrides]
    run, minutes = run_recipe_study(recipe, "nlu", settings, args.out, args.device)
    page = study_page(run, title, intro, command(script, argv), minutes, args.out)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page.replace(str(data_home()), "$KD_DATA_HOME"))
    print(f"run directory: {run}\nresults: {args.doc}")
    return run


__all__ = ["ROOT", "Claim", "parse", "per_seed_rows", "study_script", "write_page"]
