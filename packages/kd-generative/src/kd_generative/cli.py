"""The ``kd-generative`` command: kd-core's ``distill``, ``recipes`` and ``eval``; ``prune --recipe
unet-inner|unet-global`` (U-Net pruning studies: a run directory and report, as ``distill`` writes; the pruning
itself comes from kd-edge through kd-core's ``kd.unet_pruning`` plugins); ``data build`` (the offline image pairs
or the talking-face set, with a report)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kd_core.cli import domain_main, domain_parser, run_command
from kd_core.errors import ConfigError

__all__ = ["PRUNE_RECIPES", "build_parser", "main"]

#: The recipes ``prune`` runs (the studies of ``kd_generative.methods.unet_prune``).
PRUNE_RECIPES = ("unet-inner", "unet-global")


def build_parser() -> argparse.ArgumentParser:
    """kd-core's domain parser plus ``prune`` (``distill``'s options, for the pruning recipes) and ``data``."""
    from kd_generative.commands import data_build

    parser = domain_parser("generative")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    distill = sub.choices["distill"]
    prune = sub.add_parser("prune", help=f"prune a U-Net generator and fine-tune it by KD ({', '.join(PRUNE_RECIPES)})",
                           description=distill.description)
    for action in distill._actions:
        if action.option_strings and action.dest != "help":
            prune._add_action(action)
    data_build.add_arguments(sub.add_parser("data", help="build the offline image pairs or talking-face set and "
                                                         "report on them"))
    return parser


def _prune_argv(argv: list[str], args: argparse.Namespace) -> list[str]:
    """``distill``'s argv for a ``prune`` command line, after checking that it names a pruning recipe."""
    recipe = args.recipe
    if recipe not in PRUNE_RECIPES and not recipe.endswith((".yaml", ".yml")):
        raise ConfigError("--recipe", f"one of {', '.join(PRUNE_RECIPES)} (or a YAML file of one)", recipe,
                          hint="other recipes run with `kd-generative distill`")
    position = argv.index("prune")
    return [*argv[:position], "distill", *argv[position + 1:]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-generative``: exit status 0, or 2 with a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(argv, args))


def _run(argv: list[str], args: argparse.Namespace) -> Path | int:
    """``prune`` (as ``distill`` of a pruning recipe), ``distill``/``recipes``/``eval`` (kd-core's), or ``data``."""
    if args.command == "prune":
        return domain_main("generative", _prune_argv(argv, args))
    if args.command != "data":
        return domain_main("generative", argv)
    from kd_generative.commands.data_build import run

    return Path(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
