"""Shared by the kd-nlu study repro scripts: run a shipped recipe over seeds, then write its results page.

``study_script`` runs the recipe as ``kd-nlu distill --recipe NAME --set ...`` would; the page is the paper and
setting, then the study's own report (the teacher's quality, plain KD against scratch, every paired comparison
with its 95 % interval and verdict, the method's sections), then the exact command, in
``docs/results/nlu-<recipe>.md``. Run the scripts as ``python tools/repro/nlu_<name>.py`` (this folder is then on
``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from kd_core.datacache import data_home
from repro_common import ROOT, PaperClaim, base_parser, claims_section, run_recipe_study, study_page


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


def command(script: str, argv: list[str] | None) -> str:
    """The exact command that reproduces this page."""
    given = argv if argv is not None else sys.argv[1:]
    return " ".join(["HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python", f"tools/repro/{script}",
                     *map(shlex.quote, given)])


def study_script(doc: str | None, recipe: str, *, title: str, intro: str, script: str, argv: list[str] | None,
                 overrides: Callable[[argparse.Namespace], list[str]] = lambda args: [],
                 extra: Callable[[argparse.ArgumentParser], None] | None = None,
                 claims: Sequence[PaperClaim] = (), scale: str = "", paper_scale: str = "") -> Path:
    """Run the study recipe ``recipe`` over ``--seeds`` with ``overrides(args)`` and ``--set``, then write its
    results page (``title``, ``intro``, the study's report, the page's ``claims`` with the ``scale`` tested and
    the ``paper_scale``, the command) and return the run directory."""
    args = parse(doc, recipe, extra)(argv)
    torch.set_num_threads(args.threads)
    settings = [f"seeds={args.seeds}", f"name=repro-nlu-{recipe}", *overrides(args), *args.overrides]
    run, minutes = run_recipe_study(recipe, "nlu", settings, args.out, args.device)
    closing = ""
    if claims:
        results = json.loads((Path(run) / "results.json").read_text())
        closing = claims_section(results, claims, f"{scale} {len(args.seeds)} paired seeds.", paper_scale)
    page = study_page(run, title, intro, command(script, argv), minutes, args.out, closing=closing)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page.replace(str(data_home()), "$KD_DATA_HOME"))
    print(f"run directory: {run}\nresults: {args.doc}")
    return run


__all__ = ["ROOT", "PaperClaim", "parse", "study_script"]
